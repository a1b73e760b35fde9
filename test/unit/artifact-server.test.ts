import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { artifactRoutes } from '../../daemon/artifact-server.ts';
import { serveOnSocket } from '../../daemon/artifact-socket.ts';
import { cacheEndpoint } from '../../agent/main.ts';
import { HttpClient } from '../../download/http-client.ts';
import { MARKER_FILE } from '../../disk/layout.ts';
import { startOpsServer } from '../../ops/server.ts';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** GET with the path sent exactly as written (fetch would normalise '..' away). */
function rawGet(base: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('artifact server: lists complete models only, serves files with Range/ETag, refuses traversal and symlink escapes', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'modelcache-art-'));
  const outside = await mkdtemp(join(tmpdir(), 'modelcache-outside-'));
  t.after(() =>
    Promise.all([rm(root, { recursive: true, force: true }), rm(outside, { recursive: true, force: true })]),
  );
  const content = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
  await mkdir(join(root, 'models', 'abc123', 'sub'), { recursive: true });
  await writeFile(join(root, 'models', 'abc123', 'weights.bin'), content);
  await writeFile(join(root, 'models', 'abc123', 'sub', 'config.json'), '{"a":1}');
  await writeFile(join(outside, 'secret'), 'top secret');
  await symlink(join(outside, 'secret'), join(root, 'models', 'abc123', 'escape'));
  await symlink('weights.bin', join(root, 'models', 'abc123', 'alias'));
  await writeFile(
    join(root, 'models', 'abc123', MARKER_FILE),
    JSON.stringify({
      uri: 's3://b/m',
      storageKey: 'abc123',
      bytes: 1007,
      files: 2,
      completedAt: '2026-11-22T00:00:00Z',
    }),
  );
  await mkdir(join(root, 'models', 'partial1'));
  await writeFile(join(root, 'models', 'partial1', 'half.bin'), 'xx');

  const srv = await startOpsServer({
    addr: '127.0.0.1:0',
    registry: new Registry(),
    unready: () => undefined,
    extra: artifactRoutes(root),
  });
  t.after(() => srv.close());

  const list = JSON.parse((await rawGet(srv.url, '/v1/models')).body.toString()) as Array<{
    key: string;
    uri: string;
    path: string;
  }>;
  assert.deepEqual(
    list.map((m) => [m.key, m.uri, m.path]),
    [['abc123', 's3://b/m', join(root, 'models', 'abc123')]],
  );
  assert.equal((await rawGet(srv.url, '/v1/models/partial1')).status, 404, 'incomplete model is 404');
  assert.equal((await rawGet(srv.url, '/v1/models/partial1/files/half.bin')).status, 404);

  const files = JSON.parse((await rawGet(srv.url, '/v1/models/abc123/files')).body.toString()) as Array<{
    path: string;
    size: number;
  }>;
  assert.deepEqual(files, [
    { path: 'sub/config.json', size: 7 },
    { path: 'weights.bin', size: 1000 },
  ]);

  const whole = await rawGet(srv.url, '/v1/models/abc123/files/weights.bin');
  assert.equal(whole.status, 200);
  assert.ok(whole.body.equals(content));
  assert.equal(whole.headers['content-length'], '1000');
  const etag = String(whole.headers.etag);
  const part = await rawGet(srv.url, '/v1/models/abc123/files/weights.bin', { range: 'bytes=100-199' });
  assert.equal(part.status, 206);
  assert.equal(part.headers['content-range'], 'bytes 100-199/1000');
  assert.ok(part.body.equals(content.subarray(100, 200)));
  const tail = await rawGet(srv.url, '/v1/models/abc123/files/weights.bin', { range: 'bytes=-10' });
  assert.ok(tail.body.equals(content.subarray(990)));
  assert.equal((await rawGet(srv.url, '/v1/models/abc123/files/weights.bin', { range: 'bytes=5000-' })).status, 416);
  assert.equal((await rawGet(srv.url, '/v1/models/abc123/files/weights.bin', { 'if-none-match': etag })).status, 304);
  assert.equal(
    (await rawGet(srv.url, '/v1/models/abc123/files/weights.bin', { range: 'bytes=0-9', 'if-range': '"stale"' }))
      .status,
    200,
    'stale If-Range gets the whole file',
  );
  assert.equal((await rawGet(srv.url, '/v1/models/abc123/files/sub/config.json')).body.toString(), '{"a":1}');
  assert.ok(
    (await rawGet(srv.url, '/v1/models/abc123/files/alias')).body.equals(content),
    'a symlink inside the model is served',
  );

  for (const path of [
    '/v1/models/abc123/files/../../../etc/passwd',
    '/v1/models/abc123/files/%2e%2e/%2e%2e/etc/passwd',
    '/v1/models/abc123/files/sub%2f..%2f..%2fpartial1%2fhalf.bin',
    '/v1/models/abc123/files/escape',
    `/v1/models/abc123/files/${MARKER_FILE}`,
  ]) {
    const r = await rawGet(srv.url, path);
    assert.ok([400, 403, 404].includes(r.status), `${path} → ${r.status}`);
    assert.ok(!r.body.toString().includes('top secret') && !r.body.toString().includes('root:'), `${path} leaked`);
  }
  assert.equal((await rawGet(srv.url, '/v1/models/..%2f..%2fetc')).status, 400);
  assert.equal((await rawGet(srv.url, '/healthz')).body.toString(), 'ok');
});

test('artifact socket: models are read through a Unix socket (a stale socket is replaced, any other file refused); the agent names it unix:///path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'modelcache-sock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const root = join(dir, 'root');
  await mkdir(join(root, 'models', 'k1'), { recursive: true });
  await writeFile(join(root, 'models', 'k1', 'w.bin'), 'WEIGHTS');
  await writeFile(
    join(root, 'models', 'k1', MARKER_FILE),
    JSON.stringify({ uri: 's3://b/m', storageKey: 'k1', bytes: 7, files: 1, completedAt: '2026-11-23T00:00:00Z' }),
  );
  const sock = join(dir, 'run', 'artifacts.sock');
  // A daemon killed while serving leaves its socket file behind.
  await mkdir(join(dir, 'run'));
  spawnSync(process.execPath, [
    '-e',
    `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`,
  ]);
  assert.ok((await stat(sock)).isSocket(), 'a stale socket is there');
  const srv = await serveOnSocket(sock, artifactRoutes(root));
  t.after(() => srv.close());
  const http = new HttpClient({
    connectTimeoutMs: 1000,
    responseTimeoutMs: 5000,
    socketPath: cacheEndpoint(`unix://${sock}`).socketPath,
  });
  t.after(() => http.close());
  const res = await http.get(`${cacheEndpoint(`unix://${sock}`).url}/v1/models/k1/files/w.bin`, {});
  assert.equal(res.statusCode, 200);
  assert.equal(await res.body.text(), 'WEIGHTS');
  assert.equal((await stat(sock)).mode & 0o777, 0o666, 'consumers running as other users can connect');

  await writeFile(join(dir, 'not-a-socket'), 'x');
  await assert.rejects(serveOnSocket(join(dir, 'not-a-socket'), artifactRoutes(root)), /exists and is not a socket/);
  assert.deepEqual(cacheEndpoint('http://10.0.0.1:8081/'), { url: 'http://10.0.0.1:8081' });
  assert.throws(() => cacheEndpoint('unix://run/x.sock'), /absolute path/);
  assert.throws(() => cacheEndpoint('10.0.0.1:8081'), /use http:\/\/HOST:PORT or unix:\/\/\/PATH/);
});

test('artifact socket: a path it cannot create or listen on rejects as an error of the flag, naming the path', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'modelcache-sockerr-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const routes = artifactRoutes(join(dir, 'root'));
  await writeFile(join(dir, 'a-file'), 'not a directory');
  const underFile = join(dir, 'a-file', 'run', 'artifacts.sock');
  const tooLong = join(dir, 'x'.repeat(120), 'artifacts.sock');
  for (const [path, why] of [
    [underFile, /ENOTDIR/],
    [tooLong, /more than the 107/],
  ] as const) {
    await assert.rejects(serveOnSocket(path, routes), (err: Error) => {
      assert.ok(err.message.startsWith(`--artifact-socket ${path}:`), err.message);
      assert.match(err.message, why);
      return true;
    });
  }
});
