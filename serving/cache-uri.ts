/**
 * KServe's rule for which cache serves a model URI: the cache's URI itself, or a folder above it.
 * Returns the path below the cache ('' when equal), or undefined when the cache does not serve it.
 */
export function subpathUnder(modelUri: string, cacheUri: string): string | undefined {
  const m = modelUri.replace(/\/+$/, '');
  const c = cacheUri.replace(/\/+$/, '');
  if (m === c) return '';
  return m.startsWith(`${c}/`) ? m.slice(c.length + 1) : undefined;
}
