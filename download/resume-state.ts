// What a download keeps beside its partial file so that a later attempt (or a restarted daemon) resumes
// instead of starting over: the HTTP source's `<name>.partial.json` and the ranged fetch's
// `<partial>.state.json`. Both are written atomically and read defensively: a file that is absent, torn
// or of another shape means "no state", and the download starts from the first byte.
import { open, readFile, rename, rm, stat } from 'node:fs/promises';

/**
 * Replaces a small state file (resume state) atomically: temp + fsync + rename, so a crash leaves
 * the old state or the new one, never a torn file. Errors are raw fs errors (callers classify).
 */
async function writeStateFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await rm(tmp, { force: true });
  const fh = await open(tmp, 'wx');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/** A state file's JSON object, or undefined when it is absent, does not parse or is not an object. */
async function readStateObject(path: string): Promise<Record<string, unknown> | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined;
}

const optString = (x: unknown): boolean => x === undefined || typeof x === 'string';
const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

/** What the first answer said about the object whose bytes are in the HTTP source's partial file. */
export interface ResumeMeta {
  url: string;
  etag?: string;
  lastModified?: string;
  total?: number;
}

/** The HTTP source's resume state, or undefined when absent, torn or of another shape. */
async function readResumeMeta(path: string): Promise<ResumeMeta | undefined> {
  const v = await readStateObject(path);
  if (!v) return undefined;
  const { url, etag, lastModified, total } = v;
  if (typeof url !== 'string' || !optString(etag) || !optString(lastModified)) return undefined;
  if (total !== undefined && !isCount(total)) return undefined;
  return v as unknown as ResumeMeta;
}

/** Saves what an answer said about the object (fields it did not give are left out). */
export async function saveResumeMeta(path: string, meta: ResumeMeta): Promise<void> {
  await writeStateFile(path, JSON.stringify(meta));
}

/**
 * Where an HTTP attempt starts: after the bytes on disk only when they are of this URL and the first
 * answer gave a validator (ETag or Last-Modified) to resume against; otherwise from the first byte.
 */
export async function resumePoint(
  partial: string,
  metaPath: string,
  url: string,
): Promise<{ offset: number; meta?: ResumeMeta; complete: boolean }> {
  const meta = await readResumeMeta(metaPath);
  const size = await stat(partial).then(
    (s) => s.size,
    () => 0,
  );
  if (size === 0 || meta?.url !== url) return { offset: 0, complete: false };
  if (meta.total !== undefined && size === meta.total) return { offset: size, meta, complete: true };
  if (meta.total !== undefined && size > meta.total) return { offset: 0, complete: false };
  if (meta.etag === undefined && meta.lastModified === undefined) return { offset: 0, complete: false };
  return { offset: size, meta, complete: false };
}

/**
 * Why a resumed answer is of another object than the bytes on disk: its total, ETag or Last-Modified
 * differs from what the first answer said (a value either answer left out is not compared); undefined when none.
 */
export function resumeMismatch(meta: ResumeMeta, now: Omit<ResumeMeta, 'url'>): string | undefined {
  if (meta.total !== undefined && now.total !== undefined && now.total !== meta.total)
    return `${now.total} bytes now, ${meta.total} before`;
  if (meta.etag !== undefined && now.etag !== undefined && now.etag !== meta.etag)
    return `ETag ${now.etag} now, ${meta.etag} before`;
  if (meta.lastModified !== undefined && now.lastModified !== undefined && now.lastModified !== meta.lastModified)
    return `Last-Modified ${now.lastModified} now, ${meta.lastModified} before`;
  return undefined;
}

/** What survives a crash of a ranged fetch: which bytes of which version are already in the partial file. */
export interface PartState {
  url: string;
  etag?: string;
  size?: number;
  partSize: number;
  /** Bytes written of each part, from its start. */
  done: number[];
}

/** Bytes part `i` spans (the last part may be shorter; unbounded while the size is unknown). */
export function partLength(s: PartState, i: number): number {
  const size = s.size ?? Infinity;
  return Math.min(s.partSize || size, size - i * s.partSize);
}

/** The saved state, or undefined when absent, torn or of another shape. */
async function readPartState(path: string): Promise<PartState | undefined> {
  const s = await readStateObject(path);
  if (!s) return undefined;
  if (
    typeof s.url !== 'string' ||
    !optString(s.etag) ||
    (s.size !== undefined && !isCount(s.size)) ||
    !isCount(s.partSize) ||
    !Array.isArray(s.done) ||
    !s.done.every(isCount)
  )
    return undefined;
  return s as unknown as PartState;
}

/**
 * The saved state of this very object (same URL, ETag and size) cut into the same parts, or undefined:
 * then the object starts from zero, so bytes of two versions or two part plans are never mixed.
 */
export async function loadPartState(
  path: string,
  obj: { url: string; etag?: string; size?: number },
  partSize: number,
  count: number,
): Promise<PartState | undefined> {
  const s = await readPartState(path);
  if (
    !s ||
    s.url !== obj.url ||
    s.etag !== obj.etag ||
    s.size !== obj.size ||
    s.partSize !== partSize ||
    s.done.length !== count ||
    s.done.some((d, i) => d > partLength(s, i))
  )
    return undefined;
  return s;
}

const STATE_EVERY_MS = 500;

export interface StateSaver {
  /** Schedules a save (at once with `now`), at most one every STATE_EVERY_MS otherwise. */
  touch(now?: boolean): void;
  flush(): Promise<void>;
}

/** Writes the part state beside the file (temp + rename), never two writes at once. */
export function partStateSaver(path: string, state: PartState): StateSaver {
  let chain: Promise<void> = Promise.resolve();
  let last = 0;
  let queued = false;
  const save = (): void => {
    if (queued) return;
    queued = true;
    chain = chain
      .then(async () => {
        queued = false;
        last = Date.now();
        await writeStateFile(path, JSON.stringify(state));
      })
      .catch(() => undefined);
  };
  return {
    touch(now = false) {
      if (now || Date.now() - last >= STATE_EVERY_MS) save();
    },
    async flush() {
      save();
      await chain;
    },
  };
}
