// Builds the control-plane binaries and the object-store test servers once per machine
// (npm test runs this first, so no test waits on a build).
import { ensureBinaries, binaryCacheDir } from '../../localcluster/binaries.ts';
import { ensureStoreServer, STORE_SERVERS, type StoreServer } from './object-stores.ts';

try {
  const bins = await ensureBinaries();
  process.stderr.write(`control-plane binaries ready in ${binaryCacheDir()} (${Object.keys(bins).length} found)\n`);
  for (const name of Object.keys(STORE_SERVERS) as StoreServer[]) await ensureStoreServer(name);
  process.stderr.write(`object-store test servers ready (${Object.keys(STORE_SERVERS).join(', ')})\n`);
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
