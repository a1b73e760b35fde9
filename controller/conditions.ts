import type { Condition } from '../kube/types.ts';

/** A condition to set; lastTransitionTime is filled in by mergeConditions. */
export type ConditionInput = Omit<Condition, 'lastTransitionTime'>;

/**
 * New conditions list: each input replaces the condition of its type, keeping lastTransitionTime when
 * the status did not change (so an unchanged condition produces an identical object and no write).
 */
export function mergeConditions(existing: Condition[] | undefined, inputs: ConditionInput[], now: string): Condition[] {
  const old = new Map((existing ?? []).map((c) => [c.type, c]));
  const out = inputs.map((c) => {
    const prev = old.get(c.type);
    return { ...c, lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now };
  });
  for (const c of existing ?? []) if (!inputs.some((i) => i.type === c.type)) out.push(c);
  return out.sort((a, b) => (a.type < b.type ? -1 : 1));
}

export function findCondition(conditions: Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** Deep equality of JSON values, ignoring key order. */
export function sameJson(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : 1));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
