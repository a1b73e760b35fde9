import { lstat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { DownloadError } from './errors.ts';

/** An entry name from an archive as a path inside `root`, or UnsafeArchive (absolute, '..', NUL). */
export function safeJoin(root: string, name: string): string {
  const clean = name.replace(/\\/g, '/');
  if (clean.includes('\0') || isAbsolute(clean) || /^[a-zA-Z]:/.test(clean)) throw unsafe(name, 'absolute path');
  const parts = clean.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) throw unsafe(name, "'..' in path");
  if (parts.length === 0) throw unsafe(name, 'empty name');
  return join(root, ...parts);
}

/** True when `path` (absolute, resolved) is `root` or below it. */
export function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** Refuses to write through a symlink: no existing component between root and `dest` (inclusive) may be one. */
export async function assertNoSymlinkOnPath(root: string, dest: string, name: string): Promise<void> {
  let p = dest;
  while (isInside(root, p) && p !== root) {
    const st = await lstat(p).catch(() => undefined);
    if (st?.isSymbolicLink()) throw unsafe(name, `it would be written through the symlink ${relative(root, p)}`);
    p = dirname(p);
  }
}

/** A link target inside root, or UnsafeArchive. Symlink targets are relative to the link's folder. */
export function safeLinkTarget(
  root: string,
  linkPath: string,
  target: string,
  name: string,
  kind: 'symlink' | 'hardlink',
): string {
  const resolved = kind === 'symlink' ? resolve(dirname(linkPath), target) : resolve(root, target);
  if (!isInside(root, resolved) || resolved === root)
    throw unsafe(name, `${kind} points outside the model directory (${target})`);
  return resolved;
}

function unsafe(name: string, why: string): DownloadError {
  return new DownloadError(
    'UnsafeArchive',
    `archive entry '${name.slice(0, 200)}' refused: ${why}; nothing was written outside the model directory`,
  );
}
