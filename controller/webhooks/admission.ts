// admission.k8s.io/v1 AdmissionReview: the request read once at the boundary, and the answers a decision makes.

/** One RFC 6902 operation; paths are JSON pointers. */
export type JsonPatchOp =
  { op: 'add' | 'replace' | 'test'; path: string; value: unknown } | { op: 'remove'; path: string };

/** What a webhook's decision function says about one object. */
export type Decision =
  { allowed: true; patch: JsonPatchOp[]; warnings?: string[] } | { allowed: false; message: string; code?: number };

export interface AdmissionRequest {
  uid: string;
  kind: { group: string; version: string; kind: string };
  operation: string;
  namespace?: string;
  name?: string;
  object: Record<string, unknown>;
  dryRun?: boolean;
}

/** Escapes one key for a JSON pointer (RFC 6901: `~` → `~0`, `/` → `~1`). */
function pointerKey(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** The request of an AdmissionReview, or a message saying what is wrong with the body. */
export function parseAdmissionReview(body: unknown): AdmissionRequest | { error: string } {
  const review = body as { apiVersion?: unknown; kind?: unknown; request?: Record<string, unknown> } | null;
  if (!review || typeof review !== 'object' || review.kind !== 'AdmissionReview')
    return { error: 'the body is not an AdmissionReview' };
  if (review.apiVersion !== 'admission.k8s.io/v1')
    return {
      error: `AdmissionReview ${String(review.apiVersion)} is not served: configure admissionReviewVersions: [v1]`,
    };
  const r = review.request;
  if (!r || typeof r.uid !== 'string') return { error: 'the AdmissionReview has no request.uid' };
  const kind = r.kind as AdmissionRequest['kind'] | undefined;
  if (!kind || typeof kind.kind !== 'string') return { error: 'the AdmissionReview has no request.kind' };
  const object = r.object;
  if (!object || typeof object !== 'object' || Array.isArray(object))
    return { error: 'the AdmissionReview has no request.object' };
  return {
    uid: r.uid,
    kind: { group: String(kind.group ?? ''), version: String(kind.version ?? ''), kind: kind.kind },
    operation: String(r.operation ?? ''),
    ...(typeof r.namespace === 'string' ? { namespace: r.namespace } : {}),
    ...(typeof r.name === 'string' ? { name: r.name } : {}),
    object: object as Record<string, unknown>,
    ...(r.dryRun === true ? { dryRun: true } : {}),
  };
}

/** The AdmissionReview answering `uid` with a decision (a JSONPatch only when there is something to change). */
export function admissionResponse(uid: string, d: Decision): Record<string, unknown> {
  const response: Record<string, unknown> = { uid, allowed: d.allowed };
  if (d.allowed) {
    if (d.patch.length) {
      response.patchType = 'JSONPatch';
      response.patch = Buffer.from(JSON.stringify(d.patch)).toString('base64');
    }
    if (d.warnings?.length) response.warnings = d.warnings;
  } else {
    response.status = { code: d.code ?? 403, reason: 'Forbidden', message: d.message };
  }
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}

/** Ops that make `labels`/`annotations` of metadata equal `want` for the given keys (undefined removes). */
export function metadataMapOps(
  meta: { labels?: Record<string, string>; annotations?: Record<string, string> },
  field: 'labels' | 'annotations',
  want: Record<string, string | undefined>,
): JsonPatchOp[] {
  const have = meta[field];
  const ops: JsonPatchOp[] = [];
  const add: Record<string, string> = {};
  for (const [k, v] of Object.entries(want)) {
    const present = have !== undefined && Object.hasOwn(have, k);
    if (v === undefined) {
      if (present) ops.push({ op: 'remove', path: `/metadata/${field}/${pointerKey(k)}` });
    } else if (!present || have[k] !== v) {
      if (have === undefined) add[k] = v;
      else ops.push({ op: present ? 'replace' : 'add', path: `/metadata/${field}/${pointerKey(k)}`, value: v });
    }
  }
  if (Object.keys(add).length) ops.unshift({ op: 'add', path: `/metadata/${field}`, value: add });
  return ops;
}
