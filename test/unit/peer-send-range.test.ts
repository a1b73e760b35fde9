// A piece's bytes sent from buffers reused across responses (daemon/peers/send-range.ts), over a real HTTP server
// and real sockets: what reaches a client is the file's bytes, whoever else is being served from the same buffers,
// however another client left, and a file that shrank is never sent as a whole body.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { BufferPool, sendRange } from '../../daemon/peers/send-range.ts';

const KiB = 1024;
const CHUNK = 64 * KiB;
const DATA = randomBytes(160 * CHUNK + 123);
let dir: string;
let file: string;
let server: Server;
let url: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mc-send-range-'));
  file = join(dir, 'piece.bin');
  await writeFile(file, DATA);
  // Two buffers kept: every response but the first ones reads into buffers another response used.
  const pool = new BufferPool(CHUNK, 2);
  server = createServer((req, res) => {
    void (async () => {
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      const [start, length] = [Number(q.get('start')), Number(q.get('length'))];
      const path = q.get('file') ?? file;
      const fh = await open(path);
      try {
        res.writeHead(200, { 'content-length': String(length) });
        await sendRange(fh, res, start, length, pool);
      } finally {
        await fh.close();
      }
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

/**
 * The body of a range as received, or the error that ended it; `leaveAfter` bytes, then the client goes; `pauseMs`:
 * it reads nothing that long first (the socket's buffers fill, and the server's writes wait in its queue).
 */
function get(
  start: number,
  length: number,
  o: { leaveAfter?: number; file?: string; pauseMs?: number } = {},
): Promise<Buffer> {
  const q = new URLSearchParams({ start: String(start), length: String(length), ...(o.file ? { file: o.file } : {}) });
  return new Promise((resolve, reject) => {
    const req = request(`${url}/?${q}`, (res) => {
      if (o.pauseMs) {
        res.pause();
        setTimeout(() => res.resume(), o.pauseMs);
      }
      const chunks: Buffer[] = [];
      let got = 0;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        got += c.length;
        if (o.leaveAfter !== undefined && got >= o.leaveAfter) {
          req.destroy();
          resolve(Buffer.concat(chunks));
        }
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('ranges sent at once from the same reused buffers, to slow readers too, each arrive as the bytes of the file', async () => {
  const ranges: [number, number][] = [
    [0, DATA.length],
    [5, 17 * CHUNK],
    [3 * CHUNK, 120 * CHUNK + 7],
    [DATA.length - 1000, 1000],
    [0, DATA.length],
  ];
  // The first two read slowly: what the server wrote to them waits in its queue while the buffers are read into.
  const bodies = await Promise.all(ranges.map(([s, l], i) => get(s, l, i < 2 ? { pauseMs: 300 } : {})));
  for (const [i, [s, l]] of ranges.entries())
    assert.equal(sha(bodies[i]!), sha(DATA.subarray(s, s + l)), `range ${s}+${l}`);
});

test('clients that leave mid-body do not change what the others get, then or after', async () => {
  const leaving = Array.from({ length: 4 }, () => get(0, DATA.length, { leaveAfter: 2 * CHUNK }));
  const staying = [get(0, DATA.length), get(CHUNK, 30 * CHUNK)];
  await Promise.all(leaving);
  const [whole, part] = await Promise.all(staying);
  assert.equal(sha(whole!), sha(DATA));
  assert.equal(sha(part!), sha(DATA.subarray(CHUNK, 31 * CHUNK)));
  const later = await Promise.all([get(0, DATA.length), get(7, 9 * CHUNK)]);
  assert.equal(sha(later[0]!), sha(DATA));
  assert.equal(sha(later[1]!), sha(DATA.subarray(7, 7 + 9 * CHUNK)));
});

test('a file shorter than the range: the response is cut off, never a whole-looking short body', async () => {
  const short = join(dir, 'short.bin');
  await writeFile(short, DATA);
  await truncate(short, 10 * CHUNK);
  await assert.rejects(get(0, DATA.length, { file: short }), 'the client sees the body end early');
});

test('a response whose client left before the send began: sendRange returns at once, nothing held', async (t) => {
  const pool = new BufferPool(CHUNK, 2);
  let sent: Promise<void> | undefined;
  const left = new Promise<void>((resolve) => {
    const s = createServer((req, res) => {
      res.once('close', () => {
        void (async () => {
          const fh = await open(file);
          sent = sendRange(fh, res, 0, DATA.length, pool).finally(() => fh.close());
          resolve();
        })();
      });
    });
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const req = request(`http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/`);
      req.on('error', () => undefined);
      req.end(() => setTimeout(() => req.destroy(), 50));
    });
    t.after(() => {
      s.closeAllConnections();
      s.close();
    });
  });
  await left;
  const outcome = await Promise.race([sent!.then(() => 'returned'), delay(2000).then(() => 'hung')]);
  assert.equal(outcome, 'returned');
});
