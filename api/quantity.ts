/** Kubernetes resource quantities (`10Gi`, `500M`, `1.5e9`, `1073741824`) as byte counts. */

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const DECIMAL: Record<string, number> = { '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
const QUANTITY = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?$/;

class QuantityError extends Error {
  readonly code = 'InvalidQuantity';
}

/** Parses a quantity to a whole number of bytes, rounding up (a size of 0.5 bytes needs 1). */
export function parseQuantity(q: string | number, field = 'quantity'): number {
  if (typeof q === 'number') {
    if (!Number.isFinite(q)) throw new QuantityError(`${field}: ${q} is not a finite number`);
    return Math.ceil(q);
  }
  const m = QUANTITY.exec(q.trim());
  if (!m) throw new QuantityError(`${field}: '${q}' is not a Kubernetes quantity; write e.g. 10Gi, 500Mi or 2G`);
  const value = Number(m[1]);
  const multiplier = m[2] ? (BINARY[m[2]] ?? DECIMAL[m[2]] ?? 1) : m[3] ? 10 ** Number(m[3]) : 1;
  const bytes = Math.ceil(value * multiplier);
  if (!Number.isFinite(bytes)) throw new QuantityError(`${field}: '${q}' is too large to be a size`);
  return bytes === 0 ? 0 : bytes; // -0 is 0
}

/** Formats bytes with the largest binary unit that keeps one decimal place readable: 1.5Gi, 300Mi, 12Ki, 7. */
export function formatBytes(bytes: number): string {
  const units: Array<[string, number]> = [
    ['Ei', 2 ** 60],
    ['Pi', 2 ** 50],
    ['Ti', 2 ** 40],
    ['Gi', 2 ** 30],
    ['Mi', 2 ** 20],
    ['Ki', 2 ** 10],
  ];
  for (const [unit, size] of units) {
    if (bytes >= size) {
      const v = bytes / size;
      return `${Number.isInteger(v) ? v : v.toFixed(1)}${unit}`;
    }
  }
  return String(bytes);
}
