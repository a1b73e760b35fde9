import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { loadConnection } from '../../kube/config.ts';

async function dir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'modelcache-kubeconfig-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

test('kubeconfig: current context, relative file paths, inline data, token, token file and basic auth', async (t) => {
  const d = await dir(t);
  await mkdir(join(d, 'certs'));
  await writeFile(join(d, 'certs', 'ca.pem'), 'CA-FROM-FILE');
  await writeFile(join(d, 'token'), 'from-file\n');
  await writeFile(
    join(d, 'config'),
    `
apiVersion: v1
kind: Config
current-context: b
clusters:
  - name: one
    cluster: { server: "https://one.example:6443/", certificate-authority: certs/ca.pem, tls-server-name: api.one }
  - name: two
    cluster: { server: "https://two.example", certificate-authority-data: ${Buffer.from('CA-INLINE').toString('base64')}, insecure-skip-tls-verify: true }
users:
  - name: tok
    user: { token: abc }
  - name: file
    user: { tokenFile: token, client-certificate-data: ${Buffer.from('CERT').toString('base64')}, client-key-data: ${Buffer.from('KEY').toString('base64')} }
  - name: basic
    user: { username: u, password: p }
contexts:
  - { name: a, context: { cluster: one, user: tok } }
  - { name: b, context: { cluster: one, user: file } }
  - { name: c, context: { cluster: two, user: basic } }
`,
  );
  const b = loadConnection({ kubeconfig: join(d, 'config'), env: {} });
  assert.equal(b.server, 'https://one.example:6443');
  assert.deepEqual(await b.headers(), { authorization: 'Bearer from-file' });
  const bt = await b.tls();
  assert.equal(String(bt.ca), 'CA-FROM-FILE');
  assert.equal(String(bt.cert), 'CERT');
  assert.equal(String(bt.key), 'KEY');
  assert.equal(bt.servername, 'api.one');
  assert.deepEqual(await loadConnection({ kubeconfig: join(d, 'config'), context: 'a', env: {} }).headers(), {
    authorization: 'Bearer abc',
  });
  const c = loadConnection({ kubeconfig: join(d, 'config'), context: 'c', env: {} });
  assert.deepEqual(await c.headers(), { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` });
  assert.equal((await c.tls()).rejectUnauthorized, false);
  assert.equal(String((await c.tls()).ca), 'CA-INLINE');
  assert.throws(
    () => loadConnection({ kubeconfig: join(d, 'config'), context: 'nope', env: {} }),
    /context 'nope' is not in/,
  );
});

test('KUBECONFIG lists files: the first to name an entry or the current context wins; missing entries are skipped', async (t) => {
  const d = await dir(t);
  await writeFile(
    join(d, 'first'),
    'current-context: x\nclusters: [{ name: k, cluster: { server: "https://first" } }]\nusers: [{ name: u, user: { token: first } }]\n',
  );
  await writeFile(
    join(d, 'second'),
    'current-context: y\nclusters: [{ name: k, cluster: { server: "https://second" } }]\ncontexts: [{ name: x, context: { cluster: k, user: u } }]\n',
  );
  const conn = loadConnection({
    env: { KUBECONFIG: [join(d, 'first'), join(d, 'missing'), join(d, 'second')].join(delimiter) },
  });
  assert.equal(conn.server, 'https://first');
  assert.deepEqual(await conn.headers(), { authorization: 'Bearer first' });
});

test('in-cluster: service host and port, the CA and the token from the service-account folder', async (t) => {
  const d = await dir(t);
  await writeFile(join(d, 'ca.crt'), 'CLUSTER-CA');
  await writeFile(join(d, 'token'), 'sa-token');
  const conn = loadConnection({
    env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' },
    serviceAccountDir: d,
  });
  assert.equal(conn.server, 'https://[fd00::1]:443');
  assert.deepEqual(await conn.headers(), { authorization: 'Bearer sa-token' });
  assert.equal(String((await conn.tls()).ca), 'CLUSTER-CA');
});

test('no configuration at all is a clear error', async (t) => {
  const d = await dir(t);
  assert.throws(
    () => loadConnection({ env: { HOME: d } }),
    /no Kubernetes cluster configured: pass --kubeconfig FILE, set KUBECONFIG, or run in a pod/,
  );
  await writeFile(join(d, 'empty'), 'apiVersion: v1\nkind: Config\n');
  assert.throws(() => loadConnection({ kubeconfig: join(d, 'empty'), env: {} }), /no Kubernetes cluster configured/);
});
