import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, realpath, stat } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { clearExtracted, extractOrPlace, placedResult, sizeBudget, type ByteBudget } from '../archive.ts';
import { isInside } from '../containment.ts';
import { DownloadError } from '../errors.ts';
import { fsFault } from '../http-status.ts';
import { sizeLimit, type DownloadOptions, type DownloadRequest, type DownloadResult } from '../types.ts';

/**
 * Copies a host path (a file or a directory tree) into req.workDir, for air-gapped clusters.
 * Only paths under the daemon's allowed roots are read, and a symlink is followed only if it stays
 * inside the root it was found under: a cache must not turn into a way to read the node's files.
 * A single file that is an archive is extracted, as with HTTP.
 */
export async function downloadFile(req: DownloadRequest, o: DownloadOptions): Promise<DownloadResult> {
  let path: string;
  try {
    path = fileURLToPath(req.uri);
  } catch {
    throw new DownloadError('InvalidUri', `'${req.uri}' is not a file:///absolute/path URI`);
  }
  const real = await realpath(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new DownloadError('SourceNotFound', `${path} does not exist on this node`);
    throw new DownloadError('AccessDenied', `cannot read ${path}: ${err.code}`);
  });
  const roots = await Promise.all(o.fileRoots.map((r) => realpath(r).catch(() => undefined)));
  const root = roots.find((r): r is string => r !== undefined && isInside(r, real));
  if (!root) {
    throw new DownloadError(
      'AccessDenied',
      o.fileRoots.length === 0
        ? 'file:// sources are disabled on this daemon; start it with --allow-file-root DIR to allow host paths under DIR'
        : `${path} is not under an allowed file root (${o.fileRoots.join(', ')})`,
    );
  }
  const limit = sizeLimit(req.maxBytes, o);
  const budget = sizeBudget(limit);
  let done = 0;
  const progress = (n: number): void => {
    done += n;
    req.onProgress?.({ bytesDone: done });
  };
  await mkdir(req.workDir, { recursive: true });
  await clearExtracted(req.workDir);
  try {
    const st = await stat(real);
    if (st.isFile()) {
      if (st.size > limit)
        throw new DownloadError(
          'SizeExceeded',
          `${path} is ${st.size} bytes, more than modelSize allows (${limit} bytes)`,
        );
      // Archives are extracted straight from the host file; anything else is copied.
      const placed = await extractOrPlace(real, req.workDir, basename(real), budget, {
        copy: true,
        signal: req.signal,
      });
      progress(st.size);
      return placedResult(st.size, placed);
    }
    let files = 0;
    for (const e of await readdir(real, { withFileTypes: true, recursive: true })) {
      if (req.signal.aborted) throw new DownloadError('Cancelled', 'copy cancelled', { cause: req.signal.reason });
      const src = join(e.parentPath, e.name);
      const rel = relative(real, src);
      if (e.isDirectory()) continue;
      const target = await realpath(src).catch(() => undefined);
      if (!target || !isInside(root, target))
        throw new DownloadError('AccessDenied', `${src} links outside the allowed file root ${root}`);
      if (!(await stat(target)).isFile()) continue;
      const dest = join(req.workDir, rel);
      await mkdir(join(dest, '..'), { recursive: true });
      await pipeline(createReadStream(target), counting(budget, progress), createWriteStream(dest));
      files++;
    }
    return { bytes: done, files };
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === 'ENOENT')
      throw new DownloadError('SourceNotFound', `${path} changed while it was being copied (a file vanished)`, {
        cause: err,
      });
    throw fsFault(err, `copying ${path}`, 'UnsafeObjectName');
  }
}

function counting(budget: ByteBudget, progress: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      try {
        budget.add(chunk.length);
        progress(chunk.length);
        cb(null, chunk);
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}
