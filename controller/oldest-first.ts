// The one order in which controllers take objects when age decides (pure).

interface Aged {
  metadata: { creationTimestamp?: string; name?: string };
}

/** Oldest first, then by name: deterministic, so the same objects are always taken in the same order. */
export function oldestFirst(a: Aged, b: Aged): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  const na = a.metadata.name ?? '';
  const nb = b.metadata.name ?? '';
  return na < nb ? -1 : na > nb ? 1 : 0;
}
