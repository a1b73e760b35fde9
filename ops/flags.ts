/** A command-line flag that must be a whole number of at least `min`; the error names the flag. */
export function wholeNumberFlag(name: string, value: string | undefined, min = 1): number {
  const n = Number(value);
  if (value === undefined || value.trim() === '' || !Number.isInteger(n) || n < min)
    throw new Error(`--${name} must be a whole number ≥ ${min} (got '${value}')`);
  return n;
}
