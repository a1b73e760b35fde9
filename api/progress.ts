/**
 * Bytes done of bytes wanted as a whole percent for `kubectl get` ("0%" … "100%"). Rounded down,
 * so "100%" means every byte is in, never 99.6% shown as done.
 */
export function progressText(done: number, total: number): string {
  if (total <= 0) return done > 0 ? '100%' : '0%';
  const pct = Math.floor((Math.min(done, total) / total) * 100);
  return `${done >= total ? 100 : Math.min(pct, 99)}%`;
}

/** One model's share of a progress figure: what is done and what is wanted, in bytes. */
export interface ProgressPart {
  done: number;
  total: number;
}

/**
 * One model's part on one node from what the node reports: downloaded counts whole, downloading
 * its bytesDone, anything else nothing; the size is the one the source announced, else `size`.
 */
export function progressPart(
  state: 'downloaded' | 'downloading' | 'other',
  reported: { bytesDone?: number; bytesTotal?: number } | undefined,
  size: number,
): ProgressPart {
  const total = reported?.bytesTotal && reported.bytesTotal > 0 ? reported.bytesTotal : size;
  if (state === 'downloaded') return { done: total, total };
  return { done: state === 'downloading' ? Math.min(reported?.bytesDone ?? 0, total) : 0, total };
}

/** Sums parts into one percent; undefined when there are none. */
export function totalProgress(parts: readonly ProgressPart[]): string | undefined {
  if (parts.length === 0) return undefined;
  return progressText(
    parts.reduce((s, p) => s + p.done, 0),
    parts.reduce((s, p) => s + p.total, 0),
  );
}
