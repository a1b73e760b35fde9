#!/usr/bin/env node
// modelcache: one executable, one subcommand per component.
import { columns } from '../ops/flag-spec.ts';
import { commands } from './commands.ts';

const [name, ...args] = process.argv.slice(2);
const help = `modelcache — a node-level model cache for Kubernetes (KServe LocalModelCache compatible)

usage: modelcache <command> [flags]

commands:
${columns(Object.entries(commands).map(([n, c]) => [`  ${n}`, c.summary]))}

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
/** Ends the process once `text` is on stderr: informers, timers and sockets must not keep a failed command alive. */
function exitAfter(code: number, text?: string): void {
  const leave = (): never => process.exit(code);
  if (text === undefined) return void leave();
  process.stderr.write(`${text}\n`, () => leave());
}

try {
  const code = await command.run(args);
  process.exitCode = code;
  // A command that returned has closed what it opened; should a handle linger anyway, do not hang.
  setTimeout(() => exitAfter(code), 10_000).unref();
} catch (err) {
  exitAfter(1, `modelcache ${name}: ${(err as Error)?.message ?? String(err)}`);
}
