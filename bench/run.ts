// npm run bench [-- controller|daemon]: runs the suites and prints one table (also bench/results.json).
import { benchController } from './controller.ts';
import { benchDaemon } from './daemon.ts';
import { report, type BenchFigure } from './table.ts';

const suites: Record<string, () => Promise<BenchFigure[]>> = { controller: benchController, daemon: benchDaemon };
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = wanted.length ? wanted : Object.keys(suites);
for (const name of names) {
  const suite = suites[name];
  if (!suite) {
    console.error(`unknown benchmark '${name}'; have: ${Object.keys(suites).join(', ')}`);
    process.exit(2);
  }
  await report(name, await suite());
}
