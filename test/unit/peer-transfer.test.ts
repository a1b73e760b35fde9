import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DaemonMetrics } from '../../daemon/metrics.ts';
import { MANIFEST_FILE } from '../../daemon/peers/protocol.ts';
import { peerTransfer } from '../../daemon/peers/transfer.ts';
import { createLogger } from '../../ops/logger.ts';

test('a model that holds a link is not offered to peers: no manifest, no summary (a copy would lack the link)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mc-transfer-'));
  try {
    const t = peerTransfer({
      tokenFile: join(dir, 'no-token'),
      stallTimeoutMs: 1000,
      metrics: new DaemonMetrics(),
      log: createLogger('daemon', 'silent', new Writable({ write: (_c, _e, cb) => cb() })),
    });
    const plain = join(dir, 'plain');
    await mkdir(join(plain, 'w'), { recursive: true });
    await writeFile(join(plain, 'w', 'a.bin'), 'abc');
    const summary = await t.describe(plain, 'k1', AbortSignal.timeout(10_000));
    assert.equal(summary?.count, 1);
    assert.ok((await readdir(plain)).includes(MANIFEST_FILE));

    const linked = join(dir, 'linked');
    await mkdir(linked);
    await writeFile(join(linked, 'blob'), 'xyz');
    await symlink('blob', join(linked, 'model.bin'));
    assert.equal(await t.describe(linked, 'k2', AbortSignal.timeout(10_000)), undefined);
    assert.ok(!(await readdir(linked)).includes(MANIFEST_FILE), 'nothing to serve');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
