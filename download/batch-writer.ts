import type { FileHandle } from 'node:fs/promises';
import { diskError } from './errors.ts';

/** Bytes gathered before one write: fewer, larger writes than one per socket chunk. */
const BATCH = 1024 * 1024;

/**
 * Writes a byte stream to a file at increasing positions in ~1 MiB batches, one batch being
 * written while the next is received. `onWritten` hears of bytes only once they are written, in order and without
 * a gap: after a write fails, nothing more is written and every later call throws that failure (the bytes it heard
 * of are exactly those from the first position on, what a resume may skip and a seed may hash).
 */
export class BatchWriter {
  /** Next file position to hand to a write (bytes received so far end here plus `pending`). */
  position: number;
  readonly #fh: FileHandle;
  readonly #onWritten: (n: number) => void;
  readonly #what: string;
  #batch: Buffer[] = [];
  #batched = 0;
  #writing: Promise<void> | undefined;
  /** The failure of a write: the writer is done. */
  #failed: unknown;

  constructor(fh: FileHandle, position: number, onWritten: (n: number) => void, what: string) {
    this.#fh = fh;
    this.position = position;
    this.#onWritten = onWritten;
    this.#what = what;
  }

  /** Bytes received but not yet handed to a write. */
  get pending(): number {
    return this.#batched;
  }

  /** Takes a chunk; waits only when a full batch must queue behind the write in flight. */
  async push(chunk: Buffer): Promise<void> {
    if (this.#failed !== undefined) throw this.#failed;
    this.#batch.push(chunk);
    this.#batched += chunk.length;
    if (this.#batched >= BATCH) await this.#issue();
  }

  /** Writes everything received; resolves when it is all written. */
  async drain(): Promise<void> {
    await this.#issue();
    const w = this.#writing;
    this.#writing = undefined;
    await w;
  }

  async #issue(): Promise<void> {
    const prev = this.#writing;
    this.#writing = undefined;
    await prev;
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#batched === 0) return;
    const bufs = this.#batch;
    const n = this.#batched;
    const at = this.position;
    this.#batch = [];
    this.#batched = 0;
    this.position += n;
    const w = writeAll(this.#fh, bufs, n, at).then(
      () => this.#onWritten(n),
      (err: unknown) => {
        this.#failed = diskError(err, `writing ${this.#what}`);
        throw this.#failed;
      },
    );
    w.catch(() => undefined); // awaited by the next issue or by drain
    this.#writing = w;
  }
}

/** Writes `bufs` (`n` bytes) at `at`, again from where a short write stopped (a disk nearly full writes less). */
export async function writeAll(fh: FileHandle, bufs: readonly Buffer[], n: number, at: number): Promise<void> {
  const { bytesWritten } = await fh.writev(bufs as Buffer[], at);
  if (bytesWritten === n) return;
  const rest = Buffer.concat(bufs).subarray(bytesWritten);
  for (let done = 0; done < rest.length;) {
    const w = await fh.write(rest, done, rest.length - done, at + bytesWritten + done);
    if (w.bytesWritten === 0) throw new Error(`no byte written at ${at + bytesWritten + done}`);
    done += w.bytesWritten;
  }
}
