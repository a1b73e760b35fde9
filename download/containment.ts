import { isAbsolute, join, relative, sep } from 'node:path';
import { isReservedInModel } from '../disk/layout.ts';
import { DownloadError } from './errors.ts';

/**
 * An entry name from an archive or a listing as its path components: '\\' is a separator, '' and '.'
 * are dropped; absolute paths, drive letters, NUL and '..' anywhere are UnsafeArchive. `[]` is the root itself.
 */
export function entryParts(name: string): string[] {
  const clean = name.replace(/\\/g, '/');
  if (clean.includes('\0')) throw unsafe(name, 'NUL in name');
  if (isAbsolute(clean) || /^[a-zA-Z]:/.test(clean)) throw unsafe(name, 'absolute path');
  const parts = clean.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw unsafe(name, "'..' in path");
  return parts;
}

/** The first component of `parts` the cache reserves for itself (see isReservedInModel), if any. */
export function reservedComponent(parts: readonly string[]): string | undefined {
  return parts.find(isReservedInModel);
}

/** An entry name from an archive as a path inside `root`, or UnsafeArchive (absolute, '..', NUL, empty). Lexical only. */
export function safeJoin(root: string, name: string): string {
  const parts = entryParts(name);
  if (parts.length === 0) throw unsafe(name, 'empty name');
  return join(root, ...parts);
}

/** True when `path` (absolute, resolved) is `root` or below it: '..x' and '..data' are below, '..' is not. */
export function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * The components (relative to the root) a symlink at `linkParts` may point to, or UnsafeArchive.
 *
 * The rule, which holds whatever else the archive contains: a target is relative, names nothing the
 * cache reserves, and is some '..' followed only by names ('../../blobs/x', 'weights/part-0.bin',
 * never 'a/../b'), and those '..' do not climb above the root; the root itself is no target either.
 * Every folder an entry is written into is a real directory (never a symlink), so the leading '..'
 * walk real directories, and a name that is itself a link resolves inside the root by the same rule:
 * whatever chain of links the archive builds, nothing resolves outside it.
 */
export function symlinkTarget(linkParts: readonly string[], target: string, name: string): string[] {
  if (target === '' || target.includes('\0')) throw unsafe(name, 'symlink with an empty target');
  if (isAbsolute(target) || target.includes('\\')) throw unsafe(name, `symlink to an absolute path (${target})`);
  const comps = target.split('/').filter((p) => p !== '' && p !== '.');
  const up = comps.findIndex((p) => p !== '..');
  const climbs = up === -1 ? comps.length : up;
  if (comps.slice(climbs).includes('..'))
    throw unsafe(name, `symlink target '${target}' has '..' after a name; write it as '../' steps, then names`);
  const base = linkParts.slice(0, -1);
  if (climbs > base.length) throw unsafe(name, `symlink points outside the model directory (${target})`);
  const resolved = [...base.slice(0, base.length - climbs), ...comps.slice(climbs)];
  if (resolved.length === 0) throw unsafe(name, `symlink points at the model directory itself (${target})`);
  const reserved = reservedComponent(resolved);
  if (reserved) throw unsafe(name, `symlink points at '${reserved}', a name the cache reserves`);
  return resolved;
}

/** An UnsafeArchive error naming the entry and why. */
export function unsafe(name: string, why: string): DownloadError {
  return new DownloadError(
    'UnsafeArchive',
    `archive entry '${name.slice(0, 200)}' refused: ${why}; nothing was written outside the model directory`,
  );
}
