import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { artifactRoutes } from '../../daemon/artifact-server.ts';
import { takeInventory } from '../../disk/inventory.ts';
import { MARKER_FILE } from '../../disk/layout.ts';
import { createLogger } from '../../ops/logger.ts';
import { startOpsServer } from '../../ops/server.ts';

const GOOD = { uri: 's3://b/good', bytes: 3, files: 1, completedAt: '2026-11-22T00:00:00Z' };

/** A cache root with one valid model and one folder per kind of corrupt marker. */
async function rootWithCorruptMarkers(): Promise<{ root: string; corrupt: string[] }> {
  const root = await mkdtemp(join(tmpdir(), 'modelcache-markers-'));
  const write = async (key: string, marker: string): Promise<void> => {
    await mkdir(join(root, 'models', key), { recursive: true });
    await writeFile(join(root, 'models', key, 'w.bin'), 'abc');
    await writeFile(join(root, 'models', key, MARKER_FILE), marker);
  };
  await write('good', JSON.stringify({ ...GOOD, storageKey: 'good' }));
  const corrupt: Record<string, string> = {
    notjson: '{"uri": "s3://b/x", "storageKey": "notjson", ',
    array: '[1, 2, 3]',
    nulled: 'null',
    wrongtypes: JSON.stringify({ ...GOOD, storageKey: 'wrongtypes', bytes: '3', uri: 7 }),
    nouri: JSON.stringify({ storageKey: 'nouri', bytes: 1, files: 1, completedAt: GOOD.completedAt }),
    badtime: JSON.stringify({ ...GOOD, storageKey: 'badtime', completedAt: 'yesterday' }),
  };
  for (const [key, text] of Object.entries(corrupt)) await write(key, text);
  return { root, corrupt: Object.keys(corrupt).sort() };
}

test('a corrupt .modelcache.json means "not complete" with a warning naming it; the inventory still succeeds', async (t) => {
  const { root, corrupt } = await rootWithCorruptMarkers();
  t.after(() => rm(root, { recursive: true, force: true }));
  const invalid: string[] = [];
  const inv = await takeInventory(root, (path) => invalid.push(path));
  assert.deepEqual([...inv.complete.keys()], ['good']);
  assert.equal(inv.complete.get('good')?.uri, 's3://b/good');
  assert.deepEqual([...inv.unknown].sort(), corrupt);
  assert.deepEqual(invalid.sort(), corrupt.map((k) => join(root, 'models', k, MARKER_FILE)).sort());
});

test('the reconcile warns once per corrupt marker, not on every pass', async (t) => {
  const { root, corrupt } = await rootWithCorruptMarkers();
  t.after(() => rm(root, { recursive: true, force: true }));
  const lines: string[] = [];
  const log = createLogger(
    'daemon',
    'warn',
    new Writable({
      write: (c: Buffer, _e, cb) => {
        lines.push(...c.toString().split('\n').filter(Boolean));
        cb();
      },
    }),
  );
  const { inventoryWithWarnings } = await import('../../daemon/node-cache/reconcile.ts');
  const seen = new Map<string, string>();
  for (let pass = 0; pass < 3; pass++)
    assert.deepEqual([...(await inventoryWithWarnings(root, log, seen)).complete.keys()], ['good']);
  assert.equal(lines.length, corrupt.length, 'one warning per marker');
  for (const key of corrupt)
    assert.ok(
      lines.some((l) => l.includes(join(root, 'models', key, MARKER_FILE))),
      key,
    );
});

test('/v1/models answers 200 with the valid models when another marker is corrupt', async (t) => {
  const { root } = await rootWithCorruptMarkers();
  t.after(() => rm(root, { recursive: true, force: true }));
  const srv = await startOpsServer({
    addr: '127.0.0.1:0',
    registry: new Registry(),
    unready: () => undefined,
    extra: artifactRoutes(root),
  });
  t.after(() => srv.close());
  const res = await fetch(`${srv.url}/v1/models`);
  assert.equal(res.status, 200);
  const list = (await res.json()) as Array<{ key: string; uri: string }>;
  assert.deepEqual(
    list.map((m) => [m.key, m.uri]),
    [['good', 's3://b/good']],
  );
  assert.equal((await fetch(`${srv.url}/v1/models/notjson`)).status, 404);
  assert.equal((await fetch(`${srv.url}/v1/models/good/files/w.bin`)).status, 200);
});
