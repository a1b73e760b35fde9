// The folders say what depends on what (STYLE.md's layout): every relative import of every .ts file is
// checked against the layers `bin → controller|daemon|agent → serving|download|disk|localcluster → api|kube|ops`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Product folders by layer: a folder imports its own folder and lower layers, never a higher one. */
const LAYER: Readonly<Record<string, number>> = {
  api: 0,
  kube: 0,
  ops: 0,
  serving: 1,
  download: 1,
  disk: 1,
  localcluster: 1,
  controller: 2,
  daemon: 2,
  agent: 2,
  bin: 3,
};

/**
 * Imports between different folders of one layer: only these. The bottom layer is one layer of plain
 * shapes and plumbing (api/ reads the apiserver through kube/, ops/ parses quantities with api/).
 */
const SAME_LAYER: ReadonlyArray<readonly [string, string]> = [
  ['download', 'disk'],
  ['api', 'kube'],
  ['api', 'ops'],
  ['kube', 'api'],
  ['kube', 'ops'],
  ['ops', 'api'],
];

/** Folders outside the product: they may import any product folder. */
const OUTSIDE = new Set(['test', 'bench']);

/**
 * The only imports of test/ from outside it, with their reason: the sources benchmark measures
 * downloads from the object-store test servers (versitygw, fake-gcs-server) that test/helpers builds
 * and runs. bench/ is development tooling and is not in the image.
 */
const TEST_IMPORT_EXCEPTIONS = new Set(['bench/sources.ts -> test/helpers/object-stores.ts']);

const SKIP = new Set(['node_modules', '.git', 'tmp']);

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (SKIP.has(e.name)) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await sourceFiles(p)));
    else if (e.isFile() && e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Relative specifiers of `from '…'`, `import '…'` and `import('…')`. */
function relativeImports(text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s+|\bimport\(\s*)'(\.{1,2}\/[^']+)'/g)) found.push(m[1]!);
  return found;
}

const top = (repoPath: string): string => repoPath.split('/')[0]!;

/** Every cross-folder import in the tree as `file -> target` (repository-relative paths). */
async function imports(): Promise<Array<{ from: string; to: string }>> {
  const edges: Array<{ from: string; to: string }> = [];
  for (const file of await sourceFiles(ROOT)) {
    const from = relative(ROOT, file);
    if (!from.includes('/')) continue;
    for (const spec of relativeImports(await readFile(file, 'utf8'))) {
      const to = relative(ROOT, normalize(join(dirname(file), spec)));
      edges.push({ from, to });
    }
  }
  return edges;
}

/** Why an import breaks the layout, or undefined when it is allowed. */
function violation(from: string, to: string): string | undefined {
  const a = top(from);
  const b = top(to);
  if (b === 'test' && a !== 'test') {
    return TEST_IMPORT_EXCEPTIONS.has(`${from} -> ${to}`) ? undefined : 'nothing outside test/ imports test/';
  }
  if (a === b || OUTSIDE.has(a)) return undefined;
  if (a === 'agent' && b === 'controller') return 'agent/ never imports controller/';
  if (a === 'disk' && b === 'download') return 'disk/ never imports download/';
  const la = LAYER[a];
  const lb = LAYER[b];
  if (la === undefined) return `${a}/ is not in the layout: add it to STYLE.md and to this test`;
  if (lb === undefined) return `${b}/ is not a product folder`;
  if (lb > la) return `${a}/ (layer ${la}) imports ${b}/ (layer ${lb}): arrows point down only`;
  if (lb === la && !SAME_LAYER.some(([x, y]) => x === a && y === b))
    return `${a}/ and ${b}/ are one layer apart: neither imports the other`;
  return undefined;
}

test('layering: every import follows bin → controller|daemon|agent → serving|download|disk|localcluster → api|kube|ops', async () => {
  const edges = await imports();
  assert.ok(edges.length > 500, `the scan found the imports (${edges.length})`);
  const broken = edges.flatMap(({ from, to }) => {
    const why = violation(from, to);
    return why ? [`${from} -> ${to}: ${why}`] : [];
  });
  assert.deepEqual(broken, []);
});

test('layering: kube/ imports nothing of ours but kube/, api/ and ops/', async () => {
  const outside = (await imports())
    .filter(({ from, to }) => top(from) === 'kube' && !['kube', 'api', 'ops'].includes(top(to)))
    .map(({ from, to }) => `${from} -> ${to}`);
  assert.deepEqual(outside, []);
});

test('layering: the exceptions listed are still needed', async () => {
  const edges = new Set((await imports()).map(({ from, to }) => `${from} -> ${to}`));
  for (const e of TEST_IMPORT_EXCEPTIONS) assert.ok(edges.has(e), `${e} is gone: remove it from the exceptions`);
});

test('layering: the rules see a broken arrow (agent → controller, disk → download, bin → test, serving → daemon)', () => {
  assert.match(
    violation('agent/plan.ts', 'controller/trained-model/plan.ts') ?? '',
    /agent\/ never imports controller/,
  );
  assert.match(violation('disk/capacity.ts', 'download/errors.ts') ?? '', /disk\/ never imports download/);
  assert.match(violation('bin/demo.ts', 'test/helpers/origin.ts') ?? '', /nothing outside test/);
  assert.match(violation('serving/isvc.ts', 'daemon/main.ts') ?? '', /arrows point down only/);
  assert.match(violation('kube/informer.ts', 'controller/main.ts') ?? '', /arrows point down only/);
  assert.equal(violation('download/archive.ts', 'disk/layout.ts'), undefined);
  assert.equal(violation('test/unit/x.test.ts', 'localcluster/origin.ts'), undefined);
});
