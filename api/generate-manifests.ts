// npm run manifests: writes manifests/crds/*.yaml from api/schema.ts. A unit test fails when they are stale.
import { mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { crdFiles } from './crd-files.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
await mkdir(`${root}manifests/crds`, { recursive: true });
for (const [path, text] of crdFiles()) {
  await writeFile(`${root}${path}`, text);
  console.log(`wrote ${path}`);
}
