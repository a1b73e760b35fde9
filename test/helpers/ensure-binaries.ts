// Builds the control-plane binaries once per machine (npm test runs this first, so no test waits on a build).
import { ensureBinaries, binaryCacheDir } from './binaries.ts';

try {
  const bins = await ensureBinaries();
  process.stderr.write(`control-plane binaries ready in ${binaryCacheDir()} (${Object.keys(bins).length} found)\n`);
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
