import type { FileHandle } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';

// Sending a piece's bytes from its file, read into buffers the peer server reuses. A read stream allocates a buffer
// per chunk; in a daemon that moves gigabytes, those allocations set off a major GC every few dozen MiB (V8 counts
// them as external memory), and the GC's marking was a fifth of the daemons' CPU in the p2p bench.

/** Buffers of one size reused across responses (one pool per peer server; at most `max` are kept). */
export class BufferPool {
  readonly #size: number;
  readonly #max: number;
  readonly #free: Buffer[] = [];

  constructor(size: number, max: number) {
    this.#size = size;
    this.#max = max;
  }

  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafeSlow(this.#size);
  }

  /** `b` is not read from or written to any more by whoever took it. */
  give(b: Buffer): void {
    if (this.#free.length < this.#max) this.#free.push(b);
  }
}

/**
 * Sends `length` bytes of `fh` from `start` as the body of `res` (its head written already), read into two buffers
 * of `pool` in turn: one is read into while the other is being written, and a buffer is read into again only once
 * the socket took what was written from it. Ends `res` when all was sent; destroys it when the file holds fewer
 * bytes (a short body must not look like a whole piece) or a read fails. Resolves once `res` finished (every byte
 * handed to the socket: the caller's upload slot frees before the peer asks for its next piece) or closed; only
 * buffers whose writes completed go back to the pool (one still queued when the peer left is left to the GC).
 */
export async function sendRange(
  fh: FileHandle,
  res: ServerResponse,
  start: number,
  length: number,
  pool: BufferPool,
): Promise<void> {
  if (res.closed) return; // gone already: no 'close' is to come
  const closed = new Promise<void>((resolve) => res.once('close', resolve));
  let open = !res.destroyed;
  void closed.then(() => (open = false));
  const over = new Promise<void>((resolve) => {
    res.once('finish', resolve);
    void closed.then(resolve);
  });
  const buffers = [pool.take(), pool.take()];
  /** Per buffer: its last write, resolved once the socket took it (or failed it). */
  const written: (Promise<void> | undefined)[] = [undefined, undefined];
  const settled = [true, true];
  try {
    let sent = 0;
    for (let k = 0; sent < length; k ^= 1) {
      await Promise.race([written[k], closed]);
      if (!open) return;
      const b = buffers[k]!;
      const want = Math.min(b.length, length - sent);
      const { bytesRead } = await fh.read(b, 0, want, start + sent);
      if (!open) return;
      if (bytesRead === 0) {
        res.destroy(); // the file shrank
        return;
      }
      sent += bytesRead;
      settled[k] = false;
      written[k] = new Promise<void>((resolve) =>
        res.write(b.subarray(0, bytesRead), () => {
          settled[k] = true;
          resolve();
        }),
      );
    }
    res.end();
  } catch {
    res.destroy();
  } finally {
    await over;
    for (const [k, b] of buffers.entries()) if (settled[k]) pool.give(b);
  }
}
