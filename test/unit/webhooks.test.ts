import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { storageKeyFor } from '../../api/storage-key.ts';
import type { LocalModelCache, LocalModelNodeGroup } from '../../api/types.ts';
import type { Secret } from '../../kube/types.ts';
import {
  admissionResponse,
  parseAdmissionReview,
  type Decision,
  type JsonPatchOp,
} from '../../controller/webhooks/admission.ts';
import { caBundlePatch } from '../../controller/webhooks/ca-bundle.ts';
import { defaultServing } from '../../controller/webhooks/isvc-defaulter.ts';
import { mutatePod, type PodShape } from '../../controller/webhooks/pod-mutator.ts';
import { secretVerdict, serviceSans } from '../../controller/webhooks/tls.ts';
import { issueWebhookPki } from '../../controller/webhooks/x509.ts';
import { cacheForUri, matchConsumer, satisfiable } from '../../serving/cache-match.ts';
import { cache, group } from '../helpers/fixtures.ts';

/** RFC 6902 as the apiserver applies a webhook's patch (add, replace, remove, test; `-` appends). */
function applyPatch<T>(doc: T, ops: JsonPatchOp[]): T {
  const out = structuredClone(doc) as Record<string, unknown>;
  for (const op of ops) {
    const keys = op.path
      .split('/')
      .slice(1)
      .map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = keys.pop() as string;
    let parent = out as Record<string, unknown> | unknown[];
    for (const k of keys) parent = (parent as Record<string, unknown>)[k] as Record<string, unknown>;
    assert.ok(parent && typeof parent === 'object', `${op.op} ${op.path}: the parent does not exist`);
    if (op.op === 'test') assert.deepEqual((parent as Record<string, unknown>)[last], op.value);
    else if (op.op === 'remove') {
      assert.ok(Object.hasOwn(parent, last), `remove ${op.path}: nothing there`);
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
    } else if (Array.isArray(parent)) {
      if (last === '-') parent.push(op.value);
      else parent.splice(Number(last), op.op === 'replace' ? 1 : 0, op.value);
    } else {
      if (op.op === 'replace') assert.ok(Object.hasOwn(parent, last), `replace ${op.path}: nothing there`);
      parent[last] = op.value;
    }
  }
  return out as T;
}

function allowed(d: Decision): { patch: JsonPatchOp[]; warnings?: string[] } {
  assert.equal(d.allowed, true, d.allowed ? '' : d.message);
  return d as { patch: JsonPatchOp[] };
}

function denied(d: Decision): string {
  assert.equal(d.allowed, false, 'expected a denial');
  return (d as { message: string }).message;
}

const gpu = group('gpu', { pool: 'gpu' }, '100Gi');
const cpu = group('cpu', { pool: 'cpu' }, '100Gi');
/** KServe's own node group: no nodeSelector, membership from the PV's node affinity. */
const kserveGroup: LocalModelNodeGroup = {
  metadata: { name: 'workers' },
  spec: {
    storageLimit: '1Gi',
    persistentVolumeSpec: {
      local: { path: '/models' },
      nodeAffinity: {
        required: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['node-a', 'node-b'] }] },
          ],
        },
      },
    },
  } as unknown as LocalModelNodeGroup['spec'],
};
const groups = new Map([gpu, cpu, kserveGroup].map((g) => [g.metadata.name ?? '', g]));
const llama = cache('llama', 's3://models/llama', '10Gi', ['cpu', 'gpu']);
const llamaSub = cache('llama-sub', 's3://models/llama/v2/', '10Gi', ['gpu']);
const onKserve = cache('kserve-model', 'hf://org/model', '1Gi', ['cpu', 'workers']);
const caches = [llama, llamaSub, onKserve];

test("cache for a URI: KServe's rule (equal after trailing '/', or below at a '/'); the deepest of nested caches", () => {
  assert.equal(cacheForUri('s3://models/llama', caches)?.cache, llama);
  assert.equal(cacheForUri('s3://models/llama///', caches)?.subpath, '');
  assert.deepEqual(cacheForUri('s3://models/llama/tokenizer', caches)?.subpath, 'tokenizer');
  assert.equal(cacheForUri('s3://models/llama2', caches), undefined, 'a prefix that is not at a / is another model');
  assert.equal(cacheForUri('s3://models/llama/v2/weights', caches)?.cache, llamaSub);
  assert.equal(cacheForUri('s3://models/llama/v2/weights', [...caches].reverse())?.cache, llamaSub);
  assert.equal(cacheForUri('gs://other/model', caches), undefined);
});

test('group: the nodegroup annotation must name one of the cache’s groups; disable-localmodel means none', () => {
  const m = matchConsumer(
    { uri: 's3://models/llama', annotations: { 'serving.kserve.io/nodegroup': 'gpu' } },
    caches,
    groups,
  );
  assert.equal(m.kind === 'cache' && m.choice.pvcName, 'llama-gpu');
  const bad = matchConsumer(
    { uri: 's3://models/llama', annotations: { 'serving.kserve.io/nodegroup': 'tpu' } },
    caches,
    groups,
  );
  assert.equal(bad.kind, 'refused');
  assert.match(bad.kind === 'refused' ? bad.message : '', /serving\.kserve\.io\/nodegroup.*'tpu'.*cpu, gpu/);
  const off = matchConsumer(
    { uri: 's3://models/llama', annotations: { 'serving.kserve.io/disable-localmodel': '' } },
    caches,
    groups,
  );
  assert.equal(off.kind, 'none');
});

test("group: the first whose nodes can match the predictor's own nodeSelector or affinity, before nodeGroups[0]", () => {
  const pick = (constraints: Parameters<typeof matchConsumer>[0]['constraints'], c = llama): string | undefined => {
    const m = matchConsumer({ uri: c.spec.sourceModelUri, constraints }, caches, groups);
    return m.kind === 'cache' ? m.choice.group : undefined;
  };
  assert.equal(pick(undefined), 'cpu', 'no constraint: the first group, as KServe');
  assert.equal(pick({ nodeSelector: { pool: 'gpu' } }), 'gpu');
  assert.equal(pick({ nodeSelector: { zone: 'a' } }), 'cpu', 'a label the groups do not fix fits the first');
  const affinity = (values: string[], operator: 'In' | 'NotIn' = 'In') => ({
    required: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator, values }] }] },
  });
  assert.equal(pick(affinity(['gpu', 'tpu'])), 'gpu');
  assert.equal(pick(affinity(['cpu'], 'NotIn')), 'gpu');
  assert.equal(pick(affinity(['none'])), 'cpu', 'no group fits: the first, as KServe');
  // KServe's group: membership from the PV's hostname affinity; terms of the pod ORed, expressions ANDed.
  const onHost = (host: string) => ({
    required: {
      nodeSelectorTerms: [
        {
          matchExpressions: [
            { key: 'pool', operator: 'In' as const, values: ['edge'] },
            { key: 'kubernetes.io/hostname', operator: 'In' as const, values: [host] },
          ],
        },
        {
          matchExpressions: [
            { key: 'pool', operator: 'In' as const, values: ['x'] },
            { key: 'kubernetes.io/hostname', operator: 'In' as const, values: ['node-q'] },
          ],
        },
      ],
    },
  });
  assert.equal(pick(onHost('node-b'), onKserve), 'workers');
  assert.equal(pick(onHost('node-z'), onKserve), 'cpu', 'a host outside the PV affinity: no group fits');
  assert.equal(pick({ nodeSelector: { pool: 'cpu' } }, onKserve), 'cpu');
});

test('node requirements: satisfiable key by key (In, NotIn, Exists, DoesNotExist, Gt, Lt)', () => {
  const r = (key: string, operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist' | 'Gt' | 'Lt', values?: string[]) => ({
    key,
    operator,
    ...(values ? { values } : {}),
  });
  assert.equal(satisfiable([r('a', 'In', ['1', '2']), r('a', 'In', ['2'])]), true);
  assert.equal(satisfiable([r('a', 'In', ['1']), r('a', 'NotIn', ['1'])]), false);
  assert.equal(satisfiable([r('a', 'Exists'), r('a', 'DoesNotExist')]), false);
  assert.equal(satisfiable([r('a', 'DoesNotExist'), r('a', 'NotIn', ['1'])]), true);
  assert.equal(satisfiable([r('gpus', 'Gt', ['2']), r('gpus', 'Lt', ['4'])]), true);
  assert.equal(satisfiable([r('gpus', 'Gt', ['2']), r('gpus', 'Lt', ['4']), r('gpus', 'NotIn', ['3'])]), false);
  assert.equal(satisfiable([r('gpus', 'Gt', ['2']), r('gpus', 'In', ['8', 'x'])]), true);
  assert.equal(satisfiable([r('gpus', 'Gt', ['8']), r('gpus', 'In', ['8'])]), false);
  assert.equal(satisfiable([r('a', 'In', ['1']), r('b', 'DoesNotExist')]), true);
});

type Meta = {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
};
const isvc = (uri: string, meta: Meta = {}, predictor: Record<string, unknown> = {}) => ({
  apiVersion: 'serving.kserve.io/v1beta1',
  kind: 'InferenceService',
  metadata: { name: 'svc', namespace: 'team-a', ...meta } as Meta,
  spec: { predictor: { model: { modelFormat: { name: 'huggingface' }, storageUri: uri }, ...predictor } },
});

test("defaulter: an InferenceService below a cache's URI gets KServe's labels and annotations; again, nothing", () => {
  const obj = isvc('s3://models/llama/tokenizer', { labels: { app: 'x' } }, { nodeSelector: { pool: 'gpu' } });
  const out = applyPatch(obj, allowed(defaultServing(obj, 'InferenceService', caches, groups)).patch);
  assert.deepEqual(out.metadata, {
    name: 'svc',
    namespace: 'team-a',
    labels: { app: 'x', 'internal.serving.kserve.io/localmodel': 'llama' },
    annotations: {
      'internal.serving.kserve.io/localmodel-sourceuri': 's3://models/llama',
      'internal.serving.kserve.io/localmodel-pvc-name': 'llama-gpu',
    },
  });
  assert.deepEqual(allowed(defaultServing(out, 'InferenceService', caches, groups)).patch, []);
});

test("defaulter: KServe's own choice (nodeGroups[0]) is kept; labels go when no cache serves the model", () => {
  const kserved = isvc(
    's3://models/llama',
    {
      labels: { 'internal.serving.kserve.io/localmodel': 'llama' },
      annotations: {
        'internal.serving.kserve.io/localmodel-sourceuri': 's3://models/llama',
        'internal.serving.kserve.io/localmodel-pvc-name': 'llama-cpu',
      },
    },
    { nodeSelector: { pool: 'gpu' } },
  );
  assert.deepEqual(allowed(defaultServing(kserved, 'InferenceService', caches, groups)).patch, []);
  const moved = { ...kserved, spec: { predictor: { model: { storageUri: 'gs://elsewhere/model' } } } };
  const out = applyPatch(moved, allowed(defaultServing(moved, 'InferenceService', caches, groups)).patch);
  assert.deepEqual(out.metadata.labels, {});
  assert.deepEqual(out.metadata.annotations, {});
  const off = {
    ...kserved,
    metadata: { ...kserved.metadata, annotations: { 'serving.kserve.io/disable-localmodel': 'true' } },
  };
  const offOut = applyPatch(off, allowed(defaultServing(off, 'InferenceService', caches, groups)).patch);
  assert.deepEqual(offOut.metadata.labels, {});
  assert.deepEqual(offOut.metadata.annotations, { 'serving.kserve.io/disable-localmodel': 'true' });
});

test('defaulter: a LocalModelNamespaceCache consumer is left to KServe; a wrong nodegroup is refused with the fix', () => {
  const ns = isvc('s3://models/llama', {
    labels: { 'internal.serving.kserve.io/localmodel': 'mine', 'internal.serving.kserve.io/localmodel-namespace': 'a' },
  });
  assert.deepEqual(allowed(defaultServing(ns, 'InferenceService', caches, groups)).patch, []);
  const wrong = isvc('s3://models/llama', { annotations: { 'serving.kserve.io/nodegroup': 'nope' } });
  assert.match(
    denied(defaultServing(wrong, 'InferenceService', caches, groups)),
    /nodegroup.*'nope'.*name one of them/,
  );
});

test('defaulter: an LLMInferenceService (spec.model.uri, spec.template node selector) is labelled the same way', () => {
  const llm = {
    metadata: { name: 'chat', namespace: 'team-a' },
    spec: {
      model: { uri: 'hf://org/model' },
      template: { nodeSelector: { 'kubernetes.io/hostname': 'node-a', pool: 'edge' } },
    },
  };
  const out = applyPatch(llm, allowed(defaultServing(llm, 'LLMInferenceService', caches, groups)).patch);
  assert.deepEqual(out.metadata, {
    name: 'chat',
    namespace: 'team-a',
    labels: { 'internal.serving.kserve.io/localmodel': 'kserve-model' },
    annotations: {
      'internal.serving.kserve.io/localmodel-sourceuri': 'hf://org/model',
      'internal.serving.kserve.io/localmodel-pvc-name': 'kserve-model-workers',
    },
  });
});

const pod = (
  labels: Record<string, string>,
  annotations: Record<string, string> = {},
  spec: object = {},
): PodShape => ({
  metadata: { name: 'p', labels, annotations },
  spec: {
    containers: [{ name: 'server' }, { name: 'sidecar', volumeMounts: [{ name: 'x', mountPath: '/x' }] }],
    ...spec,
  },
});
const key = storageKeyFor('s3://models/llama');
const wantAffinity = { key: `models.modelcache.io/${key}`, operator: 'In', values: ['true'] };

test('pod mutator: an opted-in pod gets the PVC read-only at /mnt/models in every container and the copy affinity', () => {
  const p = pod({ 'modelcache.io/cache': 'llama' });
  const out = applyPatch(p, allowed(mutatePod(p, caches, groups)).patch);
  assert.deepEqual(out.spec?.volumes, [
    { name: 'modelcache-model', persistentVolumeClaim: { claimName: 'llama-cpu', readOnly: true } },
  ]);
  const mount = { name: 'modelcache-model', mountPath: '/mnt/models', subPath: `models/${key}`, readOnly: true };
  assert.deepEqual(out.spec?.containers?.[0]?.volumeMounts, [mount]);
  assert.deepEqual(out.spec?.containers?.[1]?.volumeMounts, [{ name: 'x', mountPath: '/x' }, mount]);
  assert.deepEqual(out.spec?.affinity, {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [wantAffinity] }] },
    },
  });
  assert.deepEqual(allowed(mutatePod(out, caches, groups)).patch, [], 'a second pass (reinvocation) changes nothing');
});

test('pod mutator: mount path and containers from annotations; affinity ANDed into every existing term', () => {
  const existing = {
    podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] },
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [
          { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] },
          { matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }] },
        ],
      },
    },
  };
  const p = pod(
    { 'modelcache.io/cache': 'llama' },
    { 'modelcache.io/mount-path': '/models/llama', 'modelcache.io/containers': 'sidecar, loader' },
    { initContainers: [{ name: 'loader' }], affinity: existing, nodeSelector: { pool: 'gpu' } },
  );
  const out = applyPatch(p, allowed(mutatePod(p, caches, groups)).patch);
  assert.equal(
    out.spec?.volumes?.[0]?.persistentVolumeClaim?.claimName,
    'llama-gpu',
    "the pod's own selector picks the group",
  );
  assert.equal(out.spec?.containers?.[0]?.volumeMounts, undefined, 'a container not named is left alone');
  assert.equal(out.spec?.containers?.[1]?.volumeMounts?.[1]?.mountPath, '/models/llama');
  assert.equal(out.spec?.initContainers?.[0]?.volumeMounts?.[0]?.mountPath, '/models/llama');
  assert.deepEqual(out.spec?.affinity, {
    podAntiAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] },
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [
          { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }, wantAffinity] },
          { matchFields: [{ key: 'metadata.name', operator: 'In', values: ['n1'] }], matchExpressions: [wantAffinity] },
        ],
      },
    },
  });
});

test('pod mutator: a missing cache, a missing container, a relative path or a taken path is refused with the fix', () => {
  assert.match(
    denied(mutatePod(pod({ 'modelcache.io/cache': 'nope' }), caches, groups)),
    /label modelcache\.io\/cache names LocalModelCache 'nope', which does not exist: create it.*llama/,
  );
  assert.match(
    denied(
      mutatePod(pod({ 'modelcache.io/cache': 'llama' }, { 'modelcache.io/containers': 'server,gpu' }), caches, groups),
    ),
    /annotation modelcache\.io\/containers names container 'gpu', which the pod does not have \(its containers: server, sidecar/,
  );
  assert.match(
    denied(
      mutatePod(pod({ 'modelcache.io/cache': 'llama' }, { 'modelcache.io/mount-path': 'models' }), caches, groups),
    ),
    /modelcache\.io\/mount-path: 'models' is not an absolute path/,
  );
  assert.match(
    denied(mutatePod(pod({ 'modelcache.io/cache': 'llama' }, { 'modelcache.io/mount-path': '/x/' }), caches, groups)),
    /container 'sidecar' already mounts volume 'x' at \/x\/: set annotation modelcache\.io\/mount-path/,
  );
  assert.match(
    denied(mutatePod(pod({ 'modelcache.io/cache': '' }), caches, groups)),
    /label modelcache\.io\/cache is empty/,
  );
});

test("pod mutator: KServe's predictor pod gets only the copy affinity; other pods nothing", () => {
  const p = pod({ 'serving.kserve.io/inferenceservice': 'svc', 'internal.serving.kserve.io/localmodel': 'llama' });
  const out = applyPatch(p, allowed(mutatePod(p, caches, groups)).patch);
  assert.equal(out.spec?.volumes, undefined);
  assert.deepEqual(
    out.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
    [{ matchExpressions: [wantAffinity] }],
  );
  assert.deepEqual(allowed(mutatePod(pod({ app: 'web' }), caches, groups)).patch, []);
  const unknown = allowed(mutatePod(pod({ 'internal.serving.kserve.io/localmodel': 'gone' }), caches, groups));
  assert.deepEqual(unknown.patch, []);
  assert.match(unknown.warnings?.[0] ?? '', /'gone', which does not exist/);
});

test('AdmissionReview: parsed once; answers carry the uid, a base64 JSONPatch, or a denial', () => {
  assert.deepEqual(parseAdmissionReview({ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1beta1' }), {
    error: 'AdmissionReview admission.k8s.io/v1beta1 is not served: configure admissionReviewVersions: [v1]',
  });
  assert.ok(
    'error' in parseAdmissionReview({ kind: 'AdmissionReview', apiVersion: 'admission.k8s.io/v1', request: {} }),
  );
  const ok = parseAdmissionReview({
    kind: 'AdmissionReview',
    apiVersion: 'admission.k8s.io/v1',
    request: {
      uid: 'u1',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      object: { metadata: {} },
    },
  });
  assert.ok(!('error' in ok) && ok.uid === 'u1' && ok.kind.kind === 'Pod');
  const patch: JsonPatchOp[] = [{ op: 'add', path: '/a', value: 1 }];
  const res = admissionResponse('u1', { allowed: true, patch }).response as Record<string, string>;
  assert.equal(res.patchType, 'JSONPatch');
  assert.deepEqual(JSON.parse(Buffer.from(res.patch ?? '', 'base64').toString()), patch);
  assert.deepEqual(admissionResponse('u2', { allowed: false, message: 'no' }).response, {
    uid: 'u2',
    allowed: false,
    status: { code: 403, reason: 'Forbidden', message: 'no' },
  });
});

test('generated PKI: a CA and a serving certificate for the Service names and 127.0.0.1 that a TLS client trusts', async (t) => {
  const sans = serviceSans('modelcache-webhook', 'modelcache-system');
  const pki = issueWebhookPki(sans);
  const ca = new X509Certificate(pki.ca);
  const leaf = new X509Certificate(pki.serving.cert);
  assert.equal(ca.ca, true);
  assert.equal(leaf.ca, false);
  assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
  assert.equal(leaf.checkHost('modelcache-webhook.modelcache-system.svc'), 'modelcache-webhook.modelcache-system.svc');
  assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
  assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);

  const server = createServer({ cert: pki.serving.cert, key: pki.serving.key }, (_req, res) => res.end('served'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const get = (opts: { ca: string; servername?: string }) =>
    new Promise<string>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, ...opts, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
  assert.equal(await get({ ca: pki.ca }), 'served');
  assert.equal(await get({ ca: pki.ca, servername: 'modelcache-webhook.modelcache-system.svc' }), 'served');
  await assert.rejects(get({ ca: issueWebhookPki(sans).ca }), /certificate/, 'another CA is not trusted');
});

test('certificate Secret: generated when missing, unreadable, expiring or not naming the Service; waited for when issued by cert-manager', () => {
  const sans = serviceSans('modelcache-webhook', 'modelcache-system');
  const now = new Date();
  const secret = (pki: ReturnType<typeof issueWebhookPki>, drop?: string): Secret => {
    const data: Record<string, string> = {
      'tls.crt': Buffer.from(pki.serving.cert).toString('base64'),
      'tls.key': Buffer.from(pki.serving.key).toString('base64'),
      'ca.crt': Buffer.from(pki.ca).toString('base64'),
    };
    if (drop) delete data[drop];
    return { metadata: { name: 'modelcache-webhook-tls' }, data };
  };
  const generate = { generate: true, sans, now };
  assert.equal(secretVerdict(undefined, generate).kind, 'issue');
  assert.equal(secretVerdict(undefined, { ...generate, generate: false }).kind, 'wait');
  assert.equal(secretVerdict(secret(issueWebhookPki(sans)), generate).kind, 'use');
  assert.equal(secretVerdict(secret(issueWebhookPki(sans), 'ca.crt'), generate).kind, 'issue');
  assert.match(
    JSON.stringify(secretVerdict(secret(issueWebhookPki(sans, { servingDays: 10 })), generate)),
    /"issue".*expires/,
  );
  assert.match(
    JSON.stringify(secretVerdict(secret(issueWebhookPki(['other'])), generate)),
    /does not name modelcache-webhook/,
  );
  const fromCertManager = secret(issueWebhookPki(['whatever'], { servingDays: 1 }), 'ca.crt');
  assert.equal(secretVerdict(fromCertManager, { ...generate, generate: false }).kind, 'use', "cert-manager's to renew");
});

test('caBundle: set in every webhook that lacks it, each guarded by its name; nothing when all hold it', () => {
  const config = {
    metadata: { name: 'modelcache-webhooks' },
    webhooks: [
      { name: 'a', clientConfig: {} },
      { name: 'b', clientConfig: { caBundle: Buffer.from('CA').toString('base64') } },
    ],
  };
  const out = applyPatch(config, caBundlePatch(config, 'CA'));
  assert.deepEqual(
    out.webhooks.map((w) => w.clientConfig.caBundle),
    [Buffer.from('CA').toString('base64'), Buffer.from('CA').toString('base64')],
  );
  assert.deepEqual(caBundlePatch(out, 'CA'), []);
});
