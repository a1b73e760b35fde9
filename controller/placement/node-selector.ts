// core/v1 NodeSelector semantics, as the scheduler and the PV binder apply a PV's nodeAffinity.required
// (k8s.io/component-helpers/scheduling/corev1/nodeaffinity): terms are ORed, requirements ANDed.
import type { NodeSelector, NodeSelectorRequirement, NodeSelectorTerm } from '../../api/types.ts';

export interface NodeSelectorMatch {
  matches: boolean;
  /** Terms that cannot be evaluated (they match no node), one line each naming the field and the fix. */
  errors: string[];
}

/** What a node selector sees of a node: its labels, and its name for matchFields on metadata.name. */
export interface NodeFacts {
  name: string;
  labels?: Record<string, string>;
}

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const INTEGER = /^[-+]?[0-9]+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** strconv.ParseInt(s, 10, 64): an int64 in decimal, or undefined. */
function parseInt64(s: string | undefined): bigint | undefined {
  if (s === undefined || !INTEGER.test(s)) return undefined;
  const n = BigInt(s);
  return n < INT64_MIN || n > INT64_MAX ? undefined : n;
}

function validKey(key: string): boolean {
  const slash = key.lastIndexOf('/');
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return false;
  return name.length > 0 && name.length <= 63 && NAME.test(name);
}

const validValue = (v: string): boolean => v === '' || (v.length <= 63 && NAME.test(v));

/** Why a label requirement cannot be evaluated, or undefined when it can (labels.NewRequirement's checks). */
function labelRequirementError(r: NodeSelectorRequirement): string | undefined {
  const values = r.values ?? [];
  if (!validKey(r.key)) return `key '${r.key}' is not a valid label key`;
  switch (r.operator) {
    case 'In':
    case 'NotIn':
      if (values.length === 0) return `${r.operator} on '${r.key}' needs at least one value`;
      break;
    case 'Exists':
    case 'DoesNotExist':
      if (values.length > 0) return `${r.operator} on '${r.key}' takes no values`;
      break;
    case 'Gt':
    case 'Lt':
      if (values.length !== 1 || parseInt64(values[0]) === undefined)
        return `${r.operator} on '${r.key}' needs exactly one integer value, not ${JSON.stringify(values)}`;
      return undefined;
    default:
      return `operator '${String(r.operator)}' is not one of In, NotIn, Exists, DoesNotExist, Gt, Lt`;
  }
  const bad = values.find((v) => !validValue(v));
  return bad === undefined ? undefined : `value '${bad}' of '${r.key}' is not a valid label value`;
}

function labelRequirementHolds(r: NodeSelectorRequirement, labels: Record<string, string>): boolean {
  const has = Object.hasOwn(labels, r.key);
  const value = labels[r.key];
  const values = r.values ?? [];
  switch (r.operator) {
    case 'In':
      return has && values.includes(value as string);
    case 'NotIn':
      return !has || !values.includes(value as string);
    case 'Exists':
      return has;
    case 'DoesNotExist':
      return !has;
    case 'Gt':
    case 'Lt': {
      // A label that is not an integer never compares (labels.Requirement.Matches).
      const a = has ? parseInt64(value) : undefined;
      const b = parseInt64(values[0]);
      if (a === undefined || b === undefined) return false;
      return r.operator === 'Gt' ? a > b : a < b;
    }
    default:
      return false;
  }
}

/** matchFields support only `metadata.name` with In or NotIn and exactly one value. */
function fieldRequirementError(r: NodeSelectorRequirement): string | undefined {
  if (r.key !== 'metadata.name') return `matchFields key '${r.key}' is not supported: use metadata.name`;
  if (r.operator !== 'In' && r.operator !== 'NotIn')
    return `matchFields operator '${r.operator}' is not supported on metadata.name: use In or NotIn`;
  if ((r.values ?? []).length !== 1) return `matchFields ${r.operator} on metadata.name needs exactly one value`;
  return undefined;
}

function termErrors(term: NodeSelectorTerm): string[] {
  const out: string[] = [];
  for (const r of term.matchExpressions ?? []) {
    const e = labelRequirementError(r);
    if (e) out.push(`matchExpressions: ${e}`);
  }
  for (const r of term.matchFields ?? []) {
    const e = fieldRequirementError(r);
    if (e) out.push(`matchFields: ${e}`);
  }
  return out;
}

function termHolds(term: NodeSelectorTerm, node: NodeFacts): boolean {
  const labels = node.labels ?? {};
  if (!(term.matchExpressions ?? []).every((r) => labelRequirementHolds(r, labels))) return false;
  return (term.matchFields ?? []).every((r) => (r.operator === 'In') === (r.values?.[0] === node.name));
}

/**
 * Whether a node matches a core/v1 NodeSelector. Pure. An empty term, and an empty terms list, match
 * nothing; a term that cannot be evaluated matches nothing and is reported, while the others still count.
 */
export function matchNodeSelector(selector: NodeSelector, node: NodeFacts): NodeSelectorMatch {
  const errors: string[] = [];
  let matches = false;
  (selector.nodeSelectorTerms ?? []).forEach((term, i) => {
    if (!term.matchExpressions?.length && !term.matchFields?.length) return;
    const errs = termErrors(term);
    if (errs.length) {
      errors.push(...errs.map((e) => `nodeSelectorTerms[${i}].${e}`));
      return;
    }
    if (!matches && termHolds(term, node)) matches = true;
  });
  return { matches, errors };
}
