/**
 * The JSON merge patch (RFC 7386) that turns `from` into `to`: changed keys set, removed keys null,
 * arrays replaced whole. Undefined when nothing differs. Lets status writes remove map entries
 * (a node gone from nodeStatus) without read-modify-write of the whole object.
 */
export function createMergePatch(from: unknown, to: unknown): unknown {
  if (isObject(from) && isObject(to)) {
    const patch: Record<string, unknown> = {};
    for (const key of Object.keys(from))
      if (!(key in to) || to[key] === undefined) if (from[key] !== undefined) patch[key] = null;
    for (const [key, value] of Object.entries(to)) {
      if (value === undefined) continue;
      const sub = createMergePatch(from[key], value);
      if (sub !== undefined) patch[key] = sub;
    }
    return Object.keys(patch).length ? patch : undefined;
  }
  return JSON.stringify(from) === JSON.stringify(to) && from !== undefined ? undefined : to;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
