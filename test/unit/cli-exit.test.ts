// A fatal start-up error ends the real process, non-zero, with a message naming the flag: informers
// retrying an unreachable apiserver and timers must not keep a process that failed to start alive.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../bin/modelcache.ts', import.meta.url));
/** Generous: a start-up error ends the process in well under a second; only a hang comes near it. */
const TIMEOUT = { timeout: 60_000 };

interface Workspace {
  dir: string;
  /** A kubeconfig for an apiserver where nothing listens: informers retry it for ever. */
  kubeconfig: string;
}

async function workspace(t: TestContext): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), 'modelcache-cli-exit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfig,
    `apiVersion: v1
kind: Config
current-context: nowhere
clusters: [{ name: nowhere, cluster: { server: "https://127.0.0.1:1", insecure-skip-tls-verify: true } }]
users: [{ name: u, user: { token: t } }]
contexts: [{ name: nowhere, context: { cluster: nowhere, user: u } }]
`,
  );
  return { dir, kubeconfig };
}

/** Runs `modelcache <args>` until it exits; a process still running when the test ends is killed. */
async function run(t: TestContext, args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stderr };
}

const daemonArgs = (w: Workspace, extra: string[]): string[] => [
  'daemon',
  '--node-name',
  'n',
  '--root',
  join(w.dir, 'root'),
  '--kubeconfig',
  w.kubeconfig,
  '--listen',
  '127.0.0.1:0',
  ...extra,
];

test('daemon: --listen with a port out of range exits non-zero, naming --listen', TIMEOUT, async (t) => {
  const w = await workspace(t);
  const { code, stderr } = await run(t, daemonArgs(w, ['--listen', '127.0.0.1:99999']));
  assert.notEqual(code, 0);
  assert.match(stderr, /--listen 127\.0\.0\.1:99999: the port must be a whole number from 0 to 65535/);
});

test('daemon: --listen on an address no interface has exits non-zero, naming --listen', TIMEOUT, async (t) => {
  const w = await workspace(t);
  const { code, stderr } = await run(t, daemonArgs(w, ['--listen', '999.1.1.1:80']));
  assert.notEqual(code, 0);
  assert.match(stderr, /--listen 999\.1\.1\.1:80: /);
});

test('daemon: --artifact-socket on a regular file exits non-zero, naming --artifact-socket', TIMEOUT, async (t) => {
  const w = await workspace(t);
  const file = join(w.dir, 'not-a-socket');
  await writeFile(file, 'keep me');
  const { code, stderr } = await run(t, daemonArgs(w, ['--artifact-socket', file]));
  assert.notEqual(code, 0);
  assert.match(stderr, /--artifact-socket .*not-a-socket:? exists and is not a socket/);
});

test('daemon: --artifact-socket in a folder that cannot exist exits non-zero, naming the path', TIMEOUT, async (t) => {
  const w = await workspace(t);
  const file = join(w.dir, 'a-file');
  await writeFile(file, 'not a folder');
  const { code, stderr } = await run(t, daemonArgs(w, ['--artifact-socket', join(file, 'artifacts.sock')]));
  assert.notEqual(code, 0);
  // The raw error names the path; naming --artifact-socket is daemon/artifact-socket.ts's to add.
  assert.match(stderr, /modelcache daemon: .*a-file/);
});

const agentArgs = (w: Workspace, extra: string[]): string[] => [
  'agent',
  '--configmap',
  'modelconfig-x-0',
  '--namespace',
  'serving',
  '--kubeconfig',
  w.kubeconfig,
  '--model-dir',
  join(w.dir, 'models'),
  '--server',
  'http://127.0.0.1:1',
  '--listen',
  '127.0.0.1:0',
  ...extra,
];

test(
  'agent: --listen it cannot listen on exits non-zero, naming --listen, while its ConfigMap watch retries',
  TIMEOUT,
  async (t) => {
    const w = await workspace(t);
    const { code, stderr } = await run(t, agentArgs(w, ['--listen', '999.1.1.1:80']));
    assert.notEqual(code, 0);
    assert.match(stderr, /modelcache agent: --listen 999\.1\.1\.1:80: /);
    const bad = await run(t, agentArgs(w, ['--listen', '127.0.0.1:99999']));
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--listen 127\.0\.0\.1:99999: the port must be/);
  },
);

test(
  'agent: out-of-range numeric flags are refused before anything starts, naming flag, range and value',
  TIMEOUT,
  async (t) => {
    const w = await workspace(t);
    const models = join(w.dir, 'models');
    await mkdir(models);
    for (const [flag, value, message] of [
      ['--poll-ms', '1e12', /--poll-ms must be a whole number of milliseconds from 50 to 3600000 \(got '1e12'\)/],
      ['--poll-ms', '10', /--poll-ms must be a whole number of milliseconds from 50 to 3600000 \(got '10'\)/],
      ['--max-concurrent', '0', /--max-concurrent must be a whole number from 1 to 64 \(got '0'\)/],
      ['--max-model-size', '-1Gi', /--max-model-size must be a quantity ≥ 1 bytes.* \(got '-1Gi'\)/],
      ['--max-model-size', '1e999', /--max-model-size must be a quantity ≥ 1 bytes.* \(got '1e999'\)/],
    ] as const) {
      const { code, stderr } = await run(t, agentArgs(w, [`${flag}=${value}`]));
      assert.notEqual(code, 0, `${flag} ${value}`);
      assert.match(stderr, message);
    }
  },
);
