import { constants } from 'node:fs';
import { link, lstat, mkdir, open, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { entryParts, reservedComponent, symlinkTarget, unsafe } from './containment.ts';
import { DownloadError, diskError } from './errors.ts';

/** Counts what an extraction writes against the model's size limit: bytes, and entries (inodes). */
export interface ByteBudget {
  add(n: number): void;
  /** One more entry (file, folder, link, skipped device): an archive of empty files is no free lunch. */
  entry(name: string): void;
}

/** What an extraction made: regular files (hardlinks included), and device/FIFO entries skipped on purpose. */
export interface ExtractResult {
  files: number;
  /** Names of device and FIFO entries that were not created: for the caller to log. */
  skipped: string[];
}

/** Creates a new file: never through a link, never over anything that is already there. */
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Where one extraction writes, contained by construction rather than by string checks: every folder an
 * entry goes into is a real directory (lstat, never a symlink) walked from the root one component at a
 * time, files are created with O_EXCL|O_NOFOLLOW, symlinks follow the rule of `symlinkTarget`, hardlinks
 * point only at regular files this extraction wrote, and no name is used twice. Names the cache reserves
 * are refused. Failures come out as DownloadErrors naming the entry.
 */
export class ExtractTarget {
  readonly #root: string;
  readonly #budget: ByteBudget;
  /** Real directories checked or made by this extraction ('/'-joined, relative; '' is the root). */
  readonly #dirs = new Set<string>(['']);
  /** Every non-directory entry written (files, links), so a second use of a name is refused. */
  readonly #names = new Set<string>();
  /** Regular files this extraction wrote: what a hardlink may point at. */
  readonly #regular = new Map<string, string>();
  readonly skipped: string[] = [];
  files = 0;

  constructor(root: string, budget: ByteBudget) {
    this.#root = root;
    this.#budget = budget;
  }

  result(): ExtractResult {
    return { files: this.files, skipped: [...this.skipped] };
  }

  /** A folder entry ('./' and '.' name the root: nothing to do). */
  async dir(name: string): Promise<void> {
    await this.#guard(name, async () => {
      const parts = this.#parts(name);
      const rel = parts.join('/');
      if (this.#names.has(rel)) throw unsafe(name, 'the archive holds it twice, as a file or link and as a folder');
      await this.#folders(parts, name);
    });
  }

  /** A regular file with the bytes of `chunks` (counted against the budget); `size` is checked when known. */
  async file(name: string, chunks: AsyncIterable<Buffer>, size?: number): Promise<void> {
    await this.#guard(name, async () => {
      const { parts, abs } = await this.#claim(name);
      const fh = await open(abs, CREATE_NEW, 0o644);
      let written = 0;
      try {
        for await (const chunk of chunks) {
          this.#budget.add(chunk.length);
          await fh.write(chunk);
          written += chunk.length;
        }
      } finally {
        await fh.close();
      }
      if (size !== undefined && written !== size)
        throw new DownloadError('BadResponse', `archive entry '${name}' ended after ${written} of ${size} bytes`);
      this.#regular.set(parts.join('/'), abs);
      this.files++;
    });
  }

  /** A symlink, if its target obeys `symlinkTarget`'s rule. */
  async symlink(name: string, target: string): Promise<void> {
    await this.#guard(name, async () => {
      const { parts, abs } = await this.#claim(name, (p) => symlinkTarget(p, target, name));
      await symlink(target, abs);
    });
  }

  /** A hardlink to a regular file written earlier by this same extraction (tar names it from the root). */
  async hardlink(name: string, target: string): Promise<void> {
    await this.#guard(name, async () => {
      const to = this.#regular.get(entryParts(target).join('/'));
      if (to === undefined || !(await lstat(to)).isFile())
        throw unsafe(name, `hardlink to '${target}', which is not a file extracted before it from this archive`);
      const { parts, abs } = await this.#claim(name);
      await link(to, abs);
      this.#regular.set(parts.join('/'), abs);
      this.files++;
    });
  }

  /** An entry skipped on purpose (a device or FIFO): counted, listed, nothing created. */
  async skip(name: string): Promise<void> {
    await this.#guard(name, () => {
      this.#parts(name);
      this.skipped.push(name);
      return Promise.resolve();
    });
  }

  /** Checks a name for a new non-directory entry and makes its folders: where to create it. */
  async #claim(name: string, check?: (parts: string[]) => void): Promise<{ parts: string[]; abs: string }> {
    const parts = this.#parts(name);
    if (parts.length === 0) throw unsafe(name, 'empty name');
    const rel = parts.join('/');
    if (this.#names.has(rel) || this.#dirs.has(rel)) throw unsafe(name, 'the archive holds this name twice');
    check?.(parts);
    await this.#folders(parts.slice(0, -1), name);
    this.#names.add(rel);
    return { parts, abs: join(this.#root, ...parts) };
  }

  /** Each component of `parts` as a real directory, made if absent: never a symlink, never a file. */
  async #folders(parts: string[], name: string): Promise<void> {
    for (let i = 1; i <= parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (this.#dirs.has(rel)) continue;
      if (this.#names.has(rel)) throw unsafe(name, `'${rel}' is a file or link in this archive, not a folder`);
      const abs = join(this.#root, ...parts.slice(0, i));
      try {
        await mkdir(abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        if (!(await lstat(abs)).isDirectory()) throw unsafe(name, `'${rel}' is not a folder`);
      }
      this.#dirs.add(rel);
    }
  }

  #parts(name: string): string[] {
    this.#budget.entry(name);
    const parts = entryParts(name);
    const reserved = reservedComponent(parts);
    if (reserved) throw unsafe(name, `'${reserved}' is a name the cache reserves for itself`);
    return parts;
  }

  async #guard(name: string, op: () => Promise<void>): Promise<void> {
    try {
      await op();
    } catch (err) {
      throw entryError(err, name);
    }
  }
}

/** Content-caused file system refusals: the archive's fault, not the disk's. */
const CONTENT_FAULTS = new Set(['EISDIR', 'ENAMETOOLONG', 'EEXIST', 'ENOTDIR', 'ELOOP', 'EINVAL', 'EILSEQ', 'EMLINK']);

/** Any failure while writing one entry as a DownloadError: the content's, the disk's, or a bug (Internal). */
export function entryError(err: unknown, name: string): DownloadError {
  if (err instanceof DownloadError) return err;
  if (err instanceof URIError) return unsafe(name, 'its name is not valid text');
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && CONTENT_FAULTS.has(code)) return unsafe(name, `the file system refused it (${code})`);
  const disk = diskError(err, `extracting '${name.slice(0, 200)}'`);
  if (disk instanceof DownloadError) return disk;
  if (typeof code === 'string')
    return new DownloadError('DiskError', `${code} while extracting '${name.slice(0, 200)}'`, { cause: err });
  return new DownloadError('Internal', `bug while extracting '${name.slice(0, 200)}': ${String(err)}`, {
    cause: err,
  });
}
