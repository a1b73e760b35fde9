import { readFile, writeFile } from 'node:fs/promises';

export interface BenchFigure {
  name: string;
  value: number;
  unit: string;
  /** The reference measured in the same run (curl, tar), when the figure is a comparison. */
  reference?: number;
  ratio?: number;
  goal: string;
  ok: boolean;
}

/** Prints every suite's figures as one table and merges them into bench/results.json by suite. */
export async function report(results: Record<string, BenchFigure[]>): Promise<void> {
  const figures = Object.values(results).flat();
  const rows = figures.map((f) => [
    f.name,
    `${round(f.value)} ${f.unit}`,
    f.reference === undefined ? '' : `${round(f.reference)} ${f.unit}`,
    f.ratio === undefined ? '' : round(f.ratio).toString(),
    f.goal,
    f.ok ? 'ok' : 'MISSED',
  ]);
  const head = ['figure', 'value', 'reference', 'ratio', 'goal', ''];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  const path = new URL('./results.json', import.meta.url);
  const all = JSON.parse(await readFile(path, 'utf8').catch(() => '{}')) as Record<string, unknown>;
  for (const [suite, f] of Object.entries(results)) all[suite] = { at: new Date().toISOString(), figures: f };
  await writeFile(path, `${JSON.stringify(all, null, 2)}\n`);
}

function round(v: number): number {
  return Math.abs(v) >= 100 ? Math.round(v) : Math.round(v * 100) / 100;
}
