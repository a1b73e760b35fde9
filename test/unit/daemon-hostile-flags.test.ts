import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDaemon } from '../../daemon/main.ts';

test('daemon flags out of range are refused before anything starts, each naming the flag and its range', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'modelcache-flags-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const base = ['--node-name', 'n1', '--root', join(root, 'cache'), '--kubeconfig', join(root, 'none')];
  const cases: Array<[string, string, RegExp]> = [
    ['--stall-timeout-seconds', '3000000', /--stall-timeout-seconds .*1 to 86400/],
    ['--part-size', '0', /--part-size/],
    ['--part-size', '-5Mi', /--part-size/],
    ['--safety-margin', '-1Gi', /--safety-margin/],
    ['--max-concurrent', '1000', /--max-concurrent .*1 to 64/],
    ['--parallel-parts', '0', /--parallel-parts/],
    ['--parallel-files', '65', /--parallel-files/],
    ['--progress-interval-ms', '1e12', /--progress-interval-ms/],
    ['--orphan-grace-seconds', '-1', /--orphan-grace-seconds/],
    ['--host-root', 'var/lib/modelcache', /--host-root .*absolute host path/],
  ];
  for (const [flag, value, message] of cases)
    await assert.rejects(runDaemon([...base, flag, value]), message, `${flag} ${value}`);
  assert.deepEqual(await readdir(root), [], 'nothing was created: the flags are checked first');
});
