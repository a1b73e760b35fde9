// OpenAPI v3 schemas, CEL rules and printer columns of our CRDs: the one source manifests are generated from.
import type { Condition } from '../kube/types.ts';
import type { Pinned } from './from-schema.ts';
import { GROUP, VERSION, DEFAULT_STORAGE_PATH } from './schema-types.ts';
import { MODEL_STATES, NODE_STATES } from './states.ts';
import { SOURCE_SCHEMES, TRAINED_MODEL_SCHEMES } from './uri-schemes.ts';

/** A resource.Quantity field: int or string, positive, with a message naming the field and an example. */
function quantity(field: string, example: string) {
  return {
    'x-kubernetes-int-or-string': true,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    'x-kubernetes-validations': [
      {
        rule: "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))",
        message: `${field} must be a positive quantity such as ${example} (plain bytes, or with a suffix Ki, Mi, Gi, Ti, k, M, G, T)`,
      },
    ],
  } as const;
}

function immutable(field: string, fix: string): { rule: string; message: string } {
  return { rule: 'self == oldSelf', message: `${field} is immutable: ${fix}` };
}

/** Printer columns every resource with a Ready condition shows; the reason only with -o wide. */
const READY_COLUMNS = [
  { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
  { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason', priority: 1 },
] as const;
const AGE_COLUMN = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' } as const;

const conditionList = {
  type: 'array',
  'x-kubernetes-list-type': 'map',
  'x-kubernetes-list-map-keys': ['type'],
  items: {
    type: 'object',
    required: ['type', 'status'],
    properties: {
      type: { type: 'string' },
      status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
      reason: { type: 'string' },
      message: { type: 'string' },
      lastTransitionTime: { type: 'string', format: 'date-time' },
      observedGeneration: { type: 'integer', format: 'int64' },
    },
  },
} as const;
/** metav1.Condition: its TypeScript shape is the one kube/ writes (reason, message and time always set). */
const conditions: Pinned<typeof conditionList, Condition[]> = conditionList;

const storage = {
  type: 'object',
  description: "A storage-config secret entry and overrides of its parameters (KServe's shape).",
  properties: {
    key: { type: 'string' },
    parameters: { type: 'object', additionalProperties: { type: 'string' } },
  },
} as const;

const sourceModelUri = {
  type: 'string',
  maxLength: 2048,
  description: `Where the model comes from: ${SOURCE_SCHEMES.map((s) => `${s}://`).join(', ')}.`,
} as const;

const uriRules = [
  {
    rule: `self.matches('^(${SOURCE_SCHEMES.join('|')})://')`,
    messageExpression: `'sourceModelUri ' + self + ' has an unsupported scheme: use one of ${SOURCE_SCHEMES.map((s) => `${s}://`).join(', ')}'`,
  },
  {
    rule: "self.matches('^[a-z0-9]+://[^/]*/[^/].*$')",
    messageExpression:
      "'sourceModelUri ' + self + ' has no path: name the object or folder, e.g. s3://bucket/models/llama, hf://org/model, https://host/model.tar.gz or file:///models/llama'",
  },
  {
    // What URL parsers refuse in the authority (before the first '/'): whitespace, and a port outside 1-65535.
    rule: "!self.matches('^[a-z0-9]+://[^/]*\\\\s')",
    messageExpression: "'sourceModelUri ' + self + ' has whitespace in its host: write the host without spaces'",
  },
  {
    rule: "!self.matches('^[a-z0-9]+://[^/]*:0*(0|[1-9][0-9]{5,}|[7-9][0-9]{4}|6[6-9][0-9]{3}|65[6-9][0-9]{2}|655[4-9][0-9]|6553[6-9])/')",
    messageExpression: "'sourceModelUri ' + self + ' has a port outside 1-65535: give a port from 1 to 65535, or none'",
  },
];

const labelSelector = {
  type: 'object',
  description: 'Nodes whose labels match belong to the group (a standard label selector; {} selects every node).',
  properties: {
    matchLabels: { type: 'object', additionalProperties: { type: 'string' } },
    matchExpressions: {
      type: 'array',
      maxItems: 32,
      items: {
        type: 'object',
        required: ['key', 'operator'],
        properties: {
          key: { type: 'string', maxLength: 317 },
          operator: { type: 'string', enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] },
          values: { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 63 } },
        },
        'x-kubernetes-validations': [
          {
            rule: "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
            message:
              'nodeSelector.matchExpressions: values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist',
          },
        ],
      },
    },
  },
} as const;

export const localModelCacheCrd = crd(
  'LocalModelCache',
  'localmodelcaches',
  ['lmc'],
  {
    spec: {
      type: 'object',
      required: ['sourceModelUri', 'modelSize', 'nodeGroups'],
      properties: {
        sourceModelUri: {
          ...sourceModelUri,
          'x-kubernetes-validations': [
            ...uriRules,
            immutable('sourceModelUri', 'create a new LocalModelCache for another model'),
          ],
        },
        modelSize: {
          ...quantity('modelSize', '10Gi'),
          description:
            'Disk space the model takes on a node; checked against free space and the group storageLimit. May be edited (as in KServe): a size smaller than a copy already downloaded is reported in the SizeFits condition.',
        },
        nodeGroups: {
          type: 'array',
          minItems: 1,
          maxItems: 64,
          'x-kubernetes-list-type': 'set',
          items: { type: 'string', minLength: 1, maxLength: 253 },
          description:
            'Names of LocalModelNodeGroups; the model goes to every node of every group. May be edited (as in KServe): placement follows.',
        },
        serviceAccountName: { type: 'string', maxLength: 253 },
        storage,
      },
    },
    status: {
      type: 'object',
      properties: {
        copies: {
          type: 'object',
          properties: { available: { type: 'integer' }, failed: { type: 'integer' }, total: { type: 'integer' } },
        },
        nodeStatus: {
          type: 'object',
          additionalProperties: {
            type: 'string',
            enum: NODE_STATES,
          },
        },
        inferenceServices: {
          type: 'array',
          items: { type: 'object', properties: { name: { type: 'string' }, namespace: { type: 'string' } } },
        },
        llmInferenceServices: {
          type: 'array',
          description: 'the LLMInferenceServices (spec.model.uri) that use this cache',
          items: { type: 'object', properties: { name: { type: 'string' }, namespace: { type: 'string' } } },
        },
        progress: {
          type: 'string',
          description: 'bytes on disk across the nodes, as a percent of what they must hold',
        },
        conditions,
        observedGeneration: { type: 'integer', format: 'int64' },
      },
    },
  },
  [
    { name: 'URI', type: 'string', jsonPath: '.spec.sourceModelUri' },
    { name: 'Size', type: 'string', jsonPath: '.spec.modelSize' },
    { name: 'Available', type: 'integer', jsonPath: '.status.copies.available' },
    { name: 'Failed', type: 'integer', jsonPath: '.status.copies.failed' },
    { name: 'Total', type: 'integer', jsonPath: '.status.copies.total' },
    { name: 'Progress', type: 'string', jsonPath: '.status.progress' },
    ...READY_COLUMNS,
    AGE_COLUMN,
  ],
);

const HOST_PATH_RULE = "self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..')";

function hostPath(field: string, example: string) {
  return {
    type: 'string',
    minLength: 1,
    maxLength: 1024,
    'x-kubernetes-validations': [
      { rule: HOST_PATH_RULE, message: `${field} must be an absolute host path without '..', such as ${example}` },
    ],
  } as const;
}

const quantityMap = {
  type: 'object',
  additionalProperties: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] },
} as const;

/** core/v1 NodeSelectorRequirement lists, with the checks the apiserver applies to a PV's nodeAffinity. */
function nodeSelectorRequirements(list: 'matchExpressions' | 'matchFields') {
  const rule =
    list === 'matchFields'
      ? {
          rule: "self.key == 'metadata.name' && self.operator in ['In', 'NotIn'] && has(self.values) && size(self.values) == 1",
          message:
            'persistentVolumeSpec.nodeAffinity: matchFields supports only key metadata.name, operator In or NotIn, and exactly one value',
        }
      : {
          rule: "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : self.operator in ['Gt', 'Lt'] ? has(self.values) && size(self.values) == 1 : !has(self.values) || size(self.values) == 0",
          message:
            'persistentVolumeSpec.nodeAffinity: matchExpressions values must be non-empty for In and NotIn, one integer for Gt and Lt, and empty for Exists and DoesNotExist',
        };
  return {
    type: 'array',
    maxItems: 64,
    items: {
      type: 'object',
      required: ['key', 'operator'],
      properties: {
        key: { type: 'string', maxLength: 317 },
        operator: { type: 'string', enum: ['In', 'NotIn', 'Exists', 'DoesNotExist', 'Gt', 'Lt'] },
        values: { type: 'array', maxItems: 4096, items: { type: 'string', maxLength: 253 } },
      },
      'x-kubernetes-validations': [rule],
    },
  } as const;
}

/** core/v1 NodeSelector: terms ORed, requirements ANDed (what a PV's nodeAffinity.required holds). */
const nodeSelectorSchema = {
  type: 'object',
  required: ['nodeSelectorTerms'],
  properties: {
    nodeSelectorTerms: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        'x-kubernetes-map-type': 'atomic',
        properties: {
          matchExpressions: nodeSelectorRequirements('matchExpressions'),
          matchFields: nodeSelectorRequirements('matchFields'),
        },
      },
    },
  },
} as const;

/** KServe's persistentVolumeSpec: a core/v1 PersistentVolumeSpec; the parts we read are typed, the rest kept. */
const persistentVolumeSpec = {
  type: 'object',
  'x-kubernetes-preserve-unknown-fields': true,
  description:
    "KServe's: a core/v1 PersistentVolumeSpec. Its nodeAffinity.required selects the group's nodes (with nodeSelector too, a node must match both); local.path or hostPath.path is the host directory when storagePath is not set.",
  properties: {
    accessModes: { type: 'array', items: { type: 'string' } },
    capacity: quantityMap,
    storageClassName: { type: 'string' },
    persistentVolumeReclaimPolicy: { type: 'string' },
    volumeMode: { type: 'string' },
    mountOptions: { type: 'array', items: { type: 'string' } },
    local: {
      type: 'object',
      required: ['path'],
      'x-kubernetes-preserve-unknown-fields': true,
      properties: { path: hostPath('persistentVolumeSpec.local.path', '/models'), fsType: { type: 'string' } },
    },
    hostPath: {
      type: 'object',
      required: ['path'],
      'x-kubernetes-preserve-unknown-fields': true,
      properties: { path: hostPath('persistentVolumeSpec.hostPath.path', '/models'), type: { type: 'string' } },
    },
    nodeAffinity: {
      type: 'object',
      'x-kubernetes-preserve-unknown-fields': true,
      properties: { required: nodeSelectorSchema },
    },
  },
} as const;

/** KServe's persistentVolumeClaimSpec: a core/v1 PersistentVolumeClaimSpec; the parts we read are typed, the rest kept. */
const persistentVolumeClaimSpec = {
  type: 'object',
  'x-kubernetes-preserve-unknown-fields': true,
  description: "KServe's: a core/v1 PersistentVolumeClaimSpec, the claim each consuming namespace gets.",
  properties: {
    accessModes: { type: 'array', items: { type: 'string' } },
    storageClassName: { type: 'string' },
    volumeMode: { type: 'string' },
    volumeName: { type: 'string' },
    resources: {
      type: 'object',
      'x-kubernetes-preserve-unknown-fields': true,
      properties: { requests: quantityMap, limits: quantityMap },
    },
  },
} as const;

/** CEL: the group's host directory in object `v` (storagePath, else the PV's local.path, else hostPath.path). */
function storagePathOf(v: string): string {
  const pv = `${v}.persistentVolumeSpec`;
  return (
    `(has(${v}.storagePath) ? ${v}.storagePath : ` +
    `has(${pv}) && has(${pv}.local) && has(${pv}.local.path) ? ${pv}.local.path : ` +
    `has(${pv}) && has(${pv}.hostPath) && has(${pv}.hostPath.path) ? ${pv}.hostPath.path : '${DEFAULT_STORAGE_PATH}')`
  );
}

const nodeGroupRules = [
  {
    rule: 'has(self.nodeSelector) || (has(self.persistentVolumeSpec) && has(self.persistentVolumeSpec.nodeAffinity) && has(self.persistentVolumeSpec.nodeAffinity.required))',
    message:
      "say which nodes belong to the group: set nodeSelector (a label selector) or persistentVolumeSpec.nodeAffinity.required (KServe's node affinity), or both (then a node must match both)",
  },
  {
    rule: `has(self.storagePath) || !has(self.persistentVolumeSpec) || (has(self.persistentVolumeSpec.local) && has(self.persistentVolumeSpec.local.path)) || (has(self.persistentVolumeSpec.hostPath) && has(self.persistentVolumeSpec.hostPath.path))`,
    message:
      'the group has a persistentVolumeSpec but no host directory for the models: set storagePath, persistentVolumeSpec.local.path or persistentVolumeSpec.hostPath.path',
  },
  {
    rule: `${storagePathOf('self')} == ${storagePathOf('oldSelf')}`,
    message:
      'the storage path (storagePath, else persistentVolumeSpec.local.path, else persistentVolumeSpec.hostPath.path) is immutable: models already on disk would be orphaned; create a new group instead',
  },
];

export const localModelNodeGroupCrd = crd(
  'LocalModelNodeGroup',
  'localmodelnodegroups',
  ['lmng'],
  {
    spec: {
      type: 'object',
      required: ['storageLimit'],
      'x-kubernetes-validations': nodeGroupRules,
      properties: {
        nodeSelector: {
          ...labelSelector,
          description:
            'Ours: nodes whose labels match belong to the group (a standard label selector; {} selects every node). With persistentVolumeSpec.nodeAffinity too, a node must match both.',
        },
        storageLimit: {
          ...quantity('storageLimit', '100Gi'),
          description: 'Most bytes of models placed on each node of the group.',
        },
        storagePath: {
          ...hostPath('storagePath', DEFAULT_STORAGE_PATH),
          description: `Ours: host directory that holds the models on each node. Without it: persistentVolumeSpec.local.path, else persistentVolumeSpec.hostPath.path, else (no persistentVolumeSpec) ${DEFAULT_STORAGE_PATH}. Immutable.`,
        },
        credentials: {
          type: 'object',
          required: ['secretName'],
          description:
            "Secret in the daemon's namespace holding the source's settings under the usual variable names (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION, HF_TOKEN, HF_ENDPOINT, GOOGLE_OAUTH_ACCESS_TOKEN, STORAGE_EMULATOR_HOST…).",
          properties: {
            secretName: {
              type: 'string',
              maxLength: 253,
              'x-kubernetes-validations': [
                {
                  rule: "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",
                  message: 'credentials.secretName must be a Secret name: lower-case letters, digits, - and .',
                },
              ],
            },
          },
        },
        persistentVolumeSpec,
        persistentVolumeClaimSpec,
      },
    },
    status: {
      type: 'object',
      properties: {
        nodes: { type: 'array', items: { type: 'string' } },
        nodeCount: { type: 'integer' },
        caches: { type: 'array', items: { type: 'string' } },
        cacheCount: { type: 'integer' },
        bytesPlanned: { type: 'integer', format: 'int64' },
        storageLimitBytes: { type: 'integer', format: 'int64' },
        usage: { type: 'string' },
        used: {
          'x-kubernetes-int-or-string': true,
          anyOf: [{ type: 'integer' }, { type: 'string' }],
          description: "KServe's: bytes the group's models take on its fullest node, as the nodes report them.",
        },
        available: {
          'x-kubernetes-int-or-string': true,
          anyOf: [{ type: 'integer' }, { type: 'string' }],
          description: "KServe's: storageLimit minus used: room left on the group's fullest node.",
        },
        conditions,
        observedGeneration: { type: 'integer', format: 'int64' },
      },
    },
  },
  [
    { name: 'Limit', type: 'string', jsonPath: '.spec.storageLimit' },
    { name: 'Planned', type: 'string', jsonPath: '.status.usage' },
    { name: 'Used', type: 'string', jsonPath: '.status.used', priority: 1 },
    { name: 'Nodes', type: 'integer', jsonPath: '.status.nodeCount' },
    { name: 'Caches', type: 'integer', jsonPath: '.status.cacheCount' },
    READY_COLUMNS[0],
    AGE_COLUMN,
  ],
);

export const localModelNodeCrd = crd(
  'LocalModelNode',
  'localmodelnodes',
  ['lmn'],
  {
    spec: {
      type: 'object',
      required: ['localModels'],
      properties: {
        localModels: {
          type: 'array',
          maxItems: 1000,
          'x-kubernetes-list-type': 'map',
          'x-kubernetes-list-map-keys': ['modelName'],
          items: {
            type: 'object',
            required: ['sourceModelUri', 'modelName', 'modelSize', 'storageKey'],
            properties: {
              sourceModelUri,
              modelName: { type: 'string', maxLength: 253 },
              namespace: { type: 'string' },
              nodeGroup: { type: 'string' },
              serviceAccountName: { type: 'string' },
              storage,
              modelSize: { type: 'integer', format: 'int64', minimum: 1 },
              storagePath: { type: 'string', default: DEFAULT_STORAGE_PATH },
              storageKey: { type: 'string', pattern: '^[a-zA-Z0-9][a-zA-Z0-9._-]*$', maxLength: 128 },
              credentialsSecret: { type: 'string', maxLength: 253 },
            },
          },
        },
      },
    },
    status: {
      type: 'object',
      properties: {
        modelStatus: {
          type: 'object',
          additionalProperties: {
            type: 'string',
            enum: MODEL_STATES,
          },
        },
        models: {
          type: 'object',
          additionalProperties: {
            type: 'object',
            properties: {
              storageKey: { type: 'string' },
              bytesDone: { type: 'integer', format: 'int64' },
              bytesTotal: { type: 'integer', format: 'int64' },
              reason: { type: 'string' },
              message: { type: 'string' },
              startedAt: { type: 'string', format: 'date-time' },
              completedAt: { type: 'string', format: 'date-time' },
              /** Bytes of this copy that came from peer nodes rather than the model's source. */
              bytesFromPeers: { type: 'integer', format: 'int64' },
              /**
               * The piece manifest this node serves to its peers (peer-to-peer on); its bytes hash to digest. While
               * a download runs it may be live: hashes are added as pieces arrive, and digest is its skeleton's.
               */
              pieces: {
                type: 'object',
                required: ['digest', 'pieceSize', 'count'],
                properties: {
                  digest: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' },
                  pieceSize: { type: 'integer', format: 'int64', minimum: 1 },
                  count: { type: 'integer', format: 'int64', minimum: 0 },
                  /** 'origin': hashed as this node fetches from the source; 'peers': copied from such a node. */
                  live: { type: 'string', enum: ['origin', 'peers'] },
                },
              },
            },
          },
        },
        /** Where this node's daemon serves pieces to its peers (peer-to-peer on): host:port. */
        peer: {
          type: 'object',
          required: ['address'],
          properties: {
            address: { type: 'string', maxLength: 261 },
            /** Bytes of pieces this daemon sent to peers since it started. */
            bytesServed: { type: 'integer', format: 'int64', minimum: 0 },
          },
        },
        summary: {
          type: 'object',
          properties: {
            models: { type: 'integer' },
            downloaded: { type: 'integer' },
            failed: { type: 'integer' },
            progress: { type: 'string' },
          },
        },
        /** Written by the daemon: StoragePathMatches False while a wanted model's group path is not its root's. */
        conditions,
        observedGeneration: { type: 'integer', format: 'int64' },
      },
    },
  },
  [
    { name: 'Models', type: 'integer', jsonPath: '.status.summary.models' },
    { name: 'Downloaded', type: 'integer', jsonPath: '.status.summary.downloaded' },
    { name: 'Failed', type: 'integer', jsonPath: '.status.summary.failed' },
    { name: 'Progress', type: 'string', jsonPath: '.status.summary.progress' },
    AGE_COLUMN,
  ],
);

export const trainedModelCrd = crd(
  'TrainedModel',
  'trainedmodels',
  ['tm'],
  {
    spec: {
      type: 'object',
      required: ['inferenceService', 'model'],
      properties: {
        inferenceService: {
          type: 'string',
          minLength: 1,
          maxLength: 253,
          description: 'The multi-model InferenceService (same namespace) that serves this model.',
          'x-kubernetes-validations': [
            immutable('inferenceService', 'create a new TrainedModel for another InferenceService'),
          ],
        },
        model: {
          type: 'object',
          required: ['storageUri', 'framework', 'memory'],
          properties: {
            storageUri: {
              type: 'string',
              maxLength: 2048,
              description: `Where the model comes from: ${TRAINED_MODEL_SCHEMES.map((x) => `${x}://`).join(', ')}. Taken from the node cache when a LocalModelCache holds it.`,
              'x-kubernetes-validations': [
                {
                  rule: `self.matches('^(${TRAINED_MODEL_SCHEMES.join('|')})://[^/]*/[^/].*$')`,
                  messageExpression: `'model.storageUri ' + self + ' is not supported: use ${TRAINED_MODEL_SCHEMES.map((x) => `${x}://`).join(', ')} with a path, e.g. s3://bucket/models/iris'`,
                },
              ],
            },
            framework: {
              type: 'string',
              minLength: 1,
              maxLength: 63,
              description: "Model format, e.g. sklearn, xgboost, onnx: the InferenceService's runtime must support it.",
            },
            memory: {
              ...quantity('model.memory', '1Gi'),
              description:
                "Memory the model takes in the model server; all TrainedModels of an InferenceService must fit its predictor's memory limit.",
              'x-kubernetes-validations': [
                ...quantity('model.memory', '1Gi')['x-kubernetes-validations'],
                immutable('model.memory', 'create a new TrainedModel with the new memory'),
              ],
            },
          },
        },
      },
    },
    status: {
      type: 'object',
      properties: {
        url: { type: 'string' },
        conditions,
        observedGeneration: { type: 'integer', format: 'int64' },
      },
    },
  },
  [
    { name: 'InferenceService', type: 'string', jsonPath: '.spec.inferenceService' },
    { name: 'URL', type: 'string', jsonPath: '.status.url' },
    ...READY_COLUMNS,
    AGE_COLUMN,
  ],
  {
    scope: 'Namespaced',
    rootValidations: [
      {
        rule: "self.metadata.name.matches('^[a-zA-Z0-9_-]+$')",
        message:
          'TrainedModel names may hold only letters, digits, _ and - (they become model names in the model server)',
      },
    ],
  },
);

export const allCrds = [localModelCacheCrd, localModelNodeGroupCrd, localModelNodeCrd, trainedModelCrd];

interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  /** 1: shown only with -o wide. */
  priority?: number;
}

/** A CRD object; its spec and status schemas keep their literal types, which api/types.ts maps to TypeScript. */
function crd<const Spec extends object, const Status extends object>(
  kind: string,
  plural: string,
  shortNames: string[],
  props: { spec: Spec; status: Status },
  columns: PrinterColumn[],
  opts: { scope?: 'Cluster' | 'Namespaced'; rootValidations?: unknown[] } = {},
) {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: opts.scope ?? 'Cluster',
      names: {
        kind,
        listKind: `${kind}List`,
        plural,
        singular: kind.toLowerCase(),
        shortNames,
        categories: ['modelcache'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: columns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              required: ['spec'],
              ...(opts.rootValidations ? { 'x-kubernetes-validations': opts.rootValidations } : {}),
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: props.spec,
                status: props.status,
              },
            },
          },
        },
      ],
    },
  };
}
