// What the model agent does next, from models.json, the model folder and what it has loaded (pure).
import { createHash } from 'node:crypto';
import type { ModelEntry } from '../serving/models-json.ts';

export interface DesiredModel {
  name: string;
  spec: ModelEntry['modelSpec'];
  /** sha256 of the spec: the SUCCESS.<hash> marker and what "changed" means. */
  hash: string;
}

export function specHash(spec: ModelEntry['modelSpec']): string {
  return createHash('sha256')
    .update(JSON.stringify({ storageUri: spec.storageUri, framework: spec.framework, memory: spec.memory }))
    .digest('hex');
}

/** models.json as desired models; entries without a name or storageUri are skipped (and named in `invalid`). */
export function parseModelsJson(text: string): { models: Map<string, DesiredModel>; invalid: string[] } {
  const models = new Map<string, DesiredModel>();
  const invalid: string[] = [];
  const list = JSON.parse(text) as unknown;
  if (!Array.isArray(list)) throw new Error('models.json must be a JSON array of {modelName, modelSpec}');
  for (const e of list as Array<Partial<ModelEntry>>) {
    const name = e?.modelName;
    if (typeof name !== 'string' || !/^[a-zA-Z0-9_-]+$/.test(name) || typeof e.modelSpec?.storageUri !== 'string') {
      invalid.push(String(name ?? JSON.stringify(e).slice(0, 80)));
      continue;
    }
    models.set(name, { name, spec: e.modelSpec, hash: specHash(e.modelSpec) });
  }
  return { models, invalid };
}

export interface AgentState {
  desired: Map<string, DesiredModel>;
  /**
   * Model folders the agent made (they hold its SUCCESS.<hash> marker), with that hash. Folders it did not
   * make (lost+found, anything put there by others) are not in it: the agent never removes them.
   */
  onDisk: Map<string, string>;
  /** Loaded into the model server: name → hash. */
  loaded: Map<string, string>;
  /** Names with work running. */
  busy: Set<string>;
  /** Failed attempts: not retried before retryAt (same hash). */
  failures: Map<string, { hash: string; retryAt: number }>;
  now: number;
}

export type AgentAction =
  | { kind: 'load'; model: DesiredModel; /** The folder already holds this spec: no fetch. */ present: boolean }
  | { kind: 'unload'; name: string; /** Also delete the folder. */ remove: boolean }
  | { kind: 'remove'; name: string };

/**
 * Level-based: every desired model not loaded at its hash is fetched (unless already on disk) and
 * loaded; a loaded model that is no longer desired, or whose spec changed, is unloaded first;
 * folders the agent made that nobody wants are removed. `desired` is what models.json says: when it
 * is absent the shell does not plan at all (absent is "unknown", not "empty").
 */
export function planAgent(s: AgentState): { actions: AgentAction[]; nextRetryAt?: number } {
  const actions: AgentAction[] = [];
  let nextRetryAt: number | undefined;
  for (const m of s.desired.values()) {
    if (s.busy.has(m.name) || s.loaded.get(m.name) === m.hash) continue;
    const f = s.failures.get(m.name);
    if (f && f.hash === m.hash && f.retryAt > s.now) {
      nextRetryAt = Math.min(nextRetryAt ?? Infinity, f.retryAt);
      continue;
    }
    if (s.loaded.has(m.name))
      actions.push({ kind: 'unload', name: m.name, remove: true }); // spec changed: old one out first
    else actions.push({ kind: 'load', model: m, present: s.onDisk.get(m.name) === m.hash });
  }
  for (const name of s.loaded.keys())
    if (!s.desired.has(name) && !s.busy.has(name)) actions.push({ kind: 'unload', name, remove: true });
  for (const name of s.onDisk.keys())
    if (!s.desired.has(name) && !s.loaded.has(name) && !s.busy.has(name)) actions.push({ kind: 'remove', name });
  return { actions, ...(nextRetryAt !== undefined ? { nextRetryAt } : {}) };
}
