// npm run bench [-- controller|daemon|sources|p2p]: runs the suites and prints one table (also bench/results.json).
import { benchController } from './controller.ts';
import { benchDaemon } from './daemon.ts';
import { benchP2p } from './p2p.ts';
import { benchSources } from './sources.ts';
import { report, type BenchFigure } from './table.ts';

const suites: Record<string, () => Promise<BenchFigure[]>> = {
  controller: benchController,
  daemon: benchDaemon,
  sources: benchSources,
  p2p: benchP2p,
};
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = wanted.length ? wanted : Object.keys(suites);
const unknown = names.filter((n) => !suites[n]);
if (unknown.length) {
  console.error(`unknown benchmark '${unknown.join(', ')}'; have: ${Object.keys(suites).join(', ')}`);
  process.exit(2);
}
const results: Record<string, BenchFigure[]> = {};
for (const name of names) results[name] = await (suites[name] as () => Promise<BenchFigure[]>)();
await report(results);
