// Numeric command-line flags, range-checked once for every command; each error names the flag, the range and the value.
import { formatBytes, parseQuantity } from '../api/quantity.ts';

/** The longest wait a Node timer keeps: setTimeout/setInterval turn anything above it into 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const WHOLE = /^[+-]?\d+$/;

function range(min: number, max: number, show: (n: number) => string = String): string {
  return max >= Number.MAX_SAFE_INTEGER ? `≥ ${show(min)}` : `from ${show(min)} to ${show(max)}`;
}

/** A flag that must be a whole number (decimal digits) from `min` to `max`. */
export function wholeNumberFlag(
  name: string,
  value: string | undefined,
  min = 1,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const text = value?.trim() ?? '';
  const n = Number(text);
  if (!WHOLE.test(text) || !Number.isSafeInteger(n) || n < min || n > max)
    throw new Error(`--${name} must be a whole number ${range(min, max)} (got '${value}')`);
  return n;
}

/**
 * A duration flag in `unit` (milliseconds or seconds), returned in milliseconds. `max` (in the flag's
 * unit) is capped so the result stays a wait a timer can keep (below 2^31 ms, about 24.8 days).
 */
export function durationFlag(
  name: string,
  value: string | undefined,
  unit: 'ms' | 's',
  { min = 1, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number } = {},
): number {
  const perUnit = unit === 'ms' ? 1 : 1000;
  const cap = Math.min(max, Math.floor(MAX_TIMER_MS / perUnit));
  const words = unit === 'ms' ? 'milliseconds' : 'seconds';
  const text = value?.trim() ?? '';
  const n = Number(text);
  if (!WHOLE.test(text) || !Number.isSafeInteger(n) || n < min || n > cap)
    throw new Error(`--${name} must be a whole number of ${words} from ${min} to ${cap} (got '${value}')`);
  return n * perUnit;
}

/** A Kubernetes quantity flag (`10Gi`, `500M`, `0`) as bytes, from `min` to `max`; negatives are refused. */
export function quantityFlag(
  name: string,
  value: string | undefined,
  { min = 0, max = Number.MAX_SAFE_INTEGER }: { min?: number; max?: number } = {},
): number {
  const expected = `a quantity ${range(Math.max(0, min), max, formatBytes)} bytes, e.g. 10Gi, 500Mi or 2G`;
  let bytes: number;
  try {
    bytes = parseQuantity(value ?? '', `--${name}`);
  } catch {
    throw new Error(`--${name} must be ${expected} (got '${value}')`);
  }
  if (!Number.isSafeInteger(bytes) || bytes < Math.max(0, min) || bytes > max)
    throw new Error(`--${name} must be ${expected} (got '${value}')`);
  return bytes;
}
