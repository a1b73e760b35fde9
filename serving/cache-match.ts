// Which LocalModelCache and node group a consumer (InferenceService, LLMInferenceService, opted-in pod) uses (pure).
// KServe's rule for the cache; a better one than KServe's for the group: the predictor's own node constraints
// are honoured before falling back to the cache's first group.
import { storageKeyFor } from '../api/storage-key.ts';
import type {
  LabelSelector,
  LocalModelCache,
  LocalModelNodeGroup,
  NodeSelector,
  NodeSelectorRequirement,
  NodeSelectorTerm,
} from '../api/types.ts';
import { subpathUnder } from './cache-uri.ts';

/** KServe: names the node group an InferenceService's cache copy is taken from. */
export const NODE_GROUP_ANNOTATION = 'serving.kserve.io/nodegroup';
/** KServe: any value leaves the consumer without a local model. */
const DISABLE_ANNOTATION = 'serving.kserve.io/disable-localmodel';
/** Prefix of the node labels that say a complete copy of a model is on the node: `<prefix><storage key>: "true"`. */
export const MODEL_NODE_LABEL_PREFIX = 'models.modelcache.io/';

/** The node label that says a node holds a complete copy of the model with that storage key. */
export function modelNodeLabel(storageKey: string): string {
  return `${MODEL_NODE_LABEL_PREFIX}${storageKey}`;
}

/** KServe's name of a cache's PVC in a consumer's namespace (and, with `-<namespace>`, of its PV). */
export function cachePvcName(cache: string, group: string): string {
  return `${cache}-${group}`;
}

/** Where a workload asks to run: a pod spec's `nodeSelector` and required node affinity. */
export interface NodeConstraints {
  nodeSelector?: Record<string, string>;
  required?: NodeSelector;
}

/** What a consumer says about itself. */
export interface Consumer {
  /** The model URI it serves (predictor storageUri, LLMInferenceService spec.model.uri); none for an opted-in pod. */
  uri?: string;
  annotations?: Record<string, string>;
  constraints?: NodeConstraints;
}

interface CacheChoice {
  cache: LocalModelCache;
  cacheName: string;
  group: string;
  /** Path below the cache's URI ('' when the consumer serves the cache's URI itself). */
  subpath: string;
  storageKey: string;
  pvcName: string;
}

/** The consumer uses that cache through that group; none: it uses no cache; refused: it asks for one wrongly. */
export type CacheMatch =
  { kind: 'cache'; choice: CacheChoice } | { kind: 'none'; why: string } | { kind: 'refused'; message: string };

/**
 * The cache serving a model URI (KServe: equal after trimming trailing '/', or below it at a '/'), with the
 * path below it. Of caches nested in one another the deepest wins, so the answer does not depend on list order.
 */
export function cacheForUri(
  uri: string,
  caches: readonly LocalModelCache[],
): { cache: LocalModelCache; subpath: string } | undefined {
  let best: { cache: LocalModelCache; subpath: string; depth: number } | undefined;
  for (const cache of caches) {
    const subpath = subpathUnder(uri, cache.spec.sourceModelUri);
    if (subpath === undefined) continue;
    const depth = cache.spec.sourceModelUri.replace(/\/+$/, '').length;
    if (!best || depth > best.depth) best = { cache, subpath, depth };
  }
  return best && { cache: best.cache, subpath: best.subpath };
}

/**
 * The consumer's cache and group: by URI when it has one, else `cacheName` (an opted-in pod names its cache).
 * `serving.kserve.io/disable-localmodel` means none.
 */
export function matchConsumer(
  consumer: Consumer,
  caches: readonly LocalModelCache[],
  groups: ReadonlyMap<string, LocalModelNodeGroup>,
  cacheName?: string,
): CacheMatch {
  if (consumer.annotations && Object.hasOwn(consumer.annotations, DISABLE_ANNOTATION))
    return { kind: 'none', why: `annotation ${DISABLE_ANNOTATION} is set` };
  let found: { cache: LocalModelCache; subpath: string } | undefined;
  if (cacheName !== undefined) {
    const cache = caches.find((c) => c.metadata.name === cacheName);
    found = cache && { cache, subpath: '' };
    if (!found) return { kind: 'none', why: `no LocalModelCache is named '${cacheName}'` };
  } else {
    if (!consumer.uri) return { kind: 'none', why: 'it names no model URI' };
    found = cacheForUri(consumer.uri, caches);
    if (!found) return { kind: 'none', why: `no LocalModelCache serves ${consumer.uri}` };
  }
  const name = found.cache.metadata.name ?? '';
  const group = chooseGroup(found.cache, consumer, groups);
  if ('message' in group) return { kind: 'refused', message: group.message };
  return {
    kind: 'cache',
    choice: {
      cache: found.cache,
      cacheName: name,
      group: group.name,
      subpath: found.subpath,
      storageKey: storageKeyFor(found.cache.spec.sourceModelUri),
      pvcName: cachePvcName(name, group.name),
    },
  };
}

/**
 * The group a consumer's pods read the cache from: the one `serving.kserve.io/nodegroup` names (it must be one
 * of the cache's); else the first of the cache's groups whose nodes can satisfy the consumer's own node
 * constraints, as far as the group's selector and PV node affinity tell; else the cache's first group.
 */
function chooseGroup(
  cache: LocalModelCache,
  consumer: Consumer,
  groups: ReadonlyMap<string, LocalModelNodeGroup>,
): { name: string } | { message: string } {
  const names = cache.spec.nodeGroups ?? [];
  const asked = consumer.annotations?.[NODE_GROUP_ANNOTATION];
  if (asked !== undefined) {
    if (names.includes(asked)) return { name: asked };
    return {
      message:
        `annotation ${NODE_GROUP_ANNOTATION}: '${asked}' is not a node group of LocalModelCache ` +
        `'${cache.metadata.name}' (its groups: ${names.join(', ') || 'none'}); name one of them or remove the annotation`,
    };
  }
  const first = names[0];
  if (first === undefined)
    return { message: `LocalModelCache '${cache.metadata.name}' has no node groups: add one to spec.nodeGroups` };
  const wanted = consumerAlternatives(consumer.constraints);
  if (wanted.length === 1 && wanted[0]?.length === 0) return { name: first };
  for (const name of names) {
    const group = groups.get(name);
    if (!group) continue;
    const offered = groupAlternatives(group);
    if (offered.some((g) => wanted.some((w) => satisfiable([...g, ...w])))) return { name };
  }
  return { name: first };
}

/** A conjunction of requirements; a key `field:metadata.name` stands for the node's name (matchFields). */
type Conjunction = NodeSelectorRequirement[];

const FIELD = 'field:';

function termConjunction(term: NodeSelectorTerm): Conjunction {
  return [
    ...(term.matchExpressions ?? []),
    ...(term.matchFields ?? []).map((r) => ({ ...r, key: `${FIELD}${r.key}` })),
  ];
}

function selectorConjunction(sel: LabelSelector | undefined): Conjunction {
  return [
    ...Object.entries(sel?.matchLabels ?? {}).map(([key, v]) => ({ key, operator: 'In' as const, values: [v] })),
    ...(sel?.matchExpressions ?? []),
  ];
}

/** AND of a conjunction with a NodeSelector (terms ORed): one conjunction per term. */
function andSelector(base: Conjunction, sel: NodeSelector | undefined): Conjunction[] {
  const terms = sel?.nodeSelectorTerms ?? [];
  // An empty term list selects no node in Kubernetes; here it is treated as no constraint (unknowable).
  return terms.length ? terms.map((t) => [...base, ...termConjunction(t)]) : [base];
}

function consumerAlternatives(c: NodeConstraints | undefined): Conjunction[] {
  const base = Object.entries(c?.nodeSelector ?? {}).map(([key, v]) => ({ key, operator: 'In' as const, values: [v] }));
  return andSelector(base, c?.required);
}

/** A group's nodes: its label selector AND its PV's required node affinity (KServe's membership). */
function groupAlternatives(group: LocalModelNodeGroup): Conjunction[] {
  return andSelector(
    selectorConjunction(group.spec.nodeSelector),
    group.spec.persistentVolumeSpec?.nodeAffinity?.required,
  );
}

/** Could a node's labels satisfy every requirement at once? Decided key by key. */
export function satisfiable(reqs: Conjunction): boolean {
  const byKey = new Map<string, NodeSelectorRequirement[]>();
  for (const r of reqs) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r]);
  for (const rs of byKey.values()) if (!keySatisfiable(rs)) return false;
  return true;
}

function keySatisfiable(rs: NodeSelectorRequirement[]): boolean {
  let allowed: Set<string> | undefined;
  const excluded = new Set<string>();
  let must = false;
  let mustNot = false;
  let gt = -Infinity;
  let lt = Infinity;
  for (const r of rs) {
    const values = r.values ?? [];
    switch (r.operator) {
      case 'In':
        must = true;
        allowed = new Set(values.filter((v) => !allowed || allowed.has(v)));
        break;
      case 'NotIn':
        for (const v of values) excluded.add(v);
        break;
      case 'Exists':
        must = true;
        break;
      case 'DoesNotExist':
        mustNot = true;
        break;
      case 'Gt':
      case 'Lt': {
        must = true;
        const n = Number(values[0]);
        if (values.length !== 1 || !Number.isInteger(n)) return false;
        if (r.operator === 'Gt') gt = Math.max(gt, n);
        else lt = Math.min(lt, n);
        break;
      }
      default:
        return true; // an operator we do not know: cannot rule the group out
    }
  }
  if (mustNot) return !must;
  const numeric = gt > -Infinity || lt < Infinity;
  const fits = (v: string): boolean =>
    !excluded.has(v) && (!numeric || (/^-?\d+$/.test(v) && Number(v) > gt && Number(v) < lt));
  if (allowed) return [...allowed].some(fits);
  if (!numeric) return true;
  // Some integer strictly between the bounds that no NotIn excludes.
  const start = gt === -Infinity ? (lt === Infinity ? 0 : lt - 1) : gt + 1;
  for (let i = 0; i <= excluded.size; i++) {
    const n = gt === -Infinity ? start - i : start + i;
    if (n > gt && n < lt && fits(String(n))) return true;
  }
  return false;
}
