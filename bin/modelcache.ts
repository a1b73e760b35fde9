#!/usr/bin/env node
// modelcache: one executable, one subcommand per component.
import { commands } from './commands.ts';

const [name, ...args] = process.argv.slice(2);
const help = `modelcache — a node-level model cache for Kubernetes (KServe LocalModelCache compatible)

usage: modelcache <command> [flags]

commands:
${Object.entries(commands)
  .map(([n, c]) => `  ${n.padEnd(12)}${c.summary}`)
  .join('\n')}

Run 'modelcache <command> --help' for a command's flags.`;

if (!name || name === '--help' || name === '-h' || name === 'help') {
  console.log(help);
  process.exit(name ? 0 : 2);
}
const command = commands[name];
if (!command) {
  console.error(`unknown command '${name}'\n\n${help}`);
  process.exit(2);
}
try {
  const code = await command.run(args);
  process.exitCode = code;
} catch (err) {
  console.error(`modelcache ${name}: ${(err as Error).message}`);
  process.exitCode = 1;
}
