// The subcommands of the modelcache executable. Each component adds its entry here.
import { readFile } from 'node:fs/promises';

export interface Command {
  summary: string;
  /** Runs the command; resolves to the process exit code. */
  run(args: string[]): Promise<number>;
}

export const commands: Record<string, Command> = {
  controller: {
    summary: 'run the cluster controller (LocalModelCache → LocalModelNode fan-out and status)',
    async run(args) {
      const { runController } = await import('../controller/main.ts');
      return runController(args);
    },
  },
  daemon: {
    summary: 'run the node daemon (capacity check, download, cache, status, artifact server)',
    async run(args) {
      const { runDaemon } = await import('../daemon/main.ts');
      return runDaemon(args);
    },
  },
  agent: {
    summary: 'run the model agent beside a multi-model server (models.json → node cache or source → V2 load/unload)',
    async run(args) {
      const { runAgent } = await import('../agent/main.ts');
      return runAgent(args);
    },
  },
  version: {
    summary: 'print the version',
    async run() {
      const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as {
        version: string;
      };
      console.log(pkg.version);
      return 0;
    },
  },
};
