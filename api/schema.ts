// OpenAPI v3 schemas, CEL rules and printer columns of our CRDs: the one source manifests are generated from.
import { GROUP, VERSION, DEFAULT_STORAGE_PATH, type KubeObjectSchema } from './schema-types.ts';

const SCHEMES = ['http', 'https', 's3', 'gs', 'hf', 'file'];

/** A resource.Quantity field: int or string, positive, with a message naming the field and an example. */
function quantity(field: string, example: string): KubeObjectSchema {
  return {
    'x-kubernetes-int-or-string': true,
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    'x-kubernetes-validations': [
      {
        rule: "isQuantity(string(self)) && quantity(string(self)).isGreaterThan(quantity('0'))",
        message: `${field} must be a positive quantity such as ${example} (plain bytes, or with a suffix Ki, Mi, Gi, Ti, k, M, G, T)`,
      },
    ],
  };
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

const conditions: KubeObjectSchema = {
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
};

const storage: KubeObjectSchema = {
  type: 'object',
  description: "A storage-config secret entry and overrides of its parameters (KServe's shape).",
  properties: {
    key: { type: 'string' },
    parameters: { type: 'object', additionalProperties: { type: 'string' } },
  },
};

const sourceModelUri: KubeObjectSchema = {
  type: 'string',
  maxLength: 2048,
  description: `Where the model comes from: ${SCHEMES.map((s) => `${s}://`).join(', ')}.`,
};

const uriRules = [
  {
    rule: `self.matches('^(${SCHEMES.join('|')})://')`,
    messageExpression: `'sourceModelUri ' + self + ' has an unsupported scheme: use one of ${SCHEMES.map((s) => `${s}://`).join(', ')}'`,
  },
  {
    rule: "self.matches('^[a-z0-9]+://[^/]*/[^/].*$')",
    messageExpression:
      "'sourceModelUri ' + self + ' has no path: name the object or folder, e.g. s3://bucket/models/llama, hf://org/model, https://host/model.tar.gz or file:///models/llama'",
  },
];

const labelSelector: KubeObjectSchema = {
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
};

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
          'x-kubernetes-validations': [
            ...(quantity('modelSize', '10Gi')['x-kubernetes-validations'] as unknown[]),
            immutable('modelSize', 'create a new LocalModelCache with the new size'),
          ],
          description: 'Disk space the model takes on a node; checked against free space and the group storageLimit.',
        },
        nodeGroups: {
          type: 'array',
          minItems: 1,
          maxItems: 64,
          'x-kubernetes-list-type': 'set',
          items: { type: 'string', minLength: 1, maxLength: 253 },
          'x-kubernetes-validations': [immutable('nodeGroups', 'create a new LocalModelCache for other node groups')],
          description: 'Names of LocalModelNodeGroups; the model goes to every node of every group.',
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
            enum: ['NodeNotReady', 'NodeDownloadPending', 'NodeDownloading', 'NodeDownloaded', 'NodeDownloadError'],
          },
        },
        inferenceServices: {
          type: 'array',
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

export const localModelNodeGroupCrd = crd(
  'LocalModelNodeGroup',
  'localmodelnodegroups',
  ['lmng'],
  {
    spec: {
      type: 'object',
      required: ['nodeSelector', 'storageLimit'],
      properties: {
        nodeSelector: labelSelector,
        storageLimit: {
          ...quantity('storageLimit', '100Gi'),
          description: 'Most bytes of models placed on each node of the group.',
        },
        storagePath: {
          type: 'string',
          maxLength: 1024,
          default: DEFAULT_STORAGE_PATH,
          description: 'Host directory that holds the models on each node.',
          'x-kubernetes-validations': [
            {
              rule: "self.startsWith('/') && !self.contains('/../') && !self.endsWith('/..')",
              message: `storagePath must be an absolute host path without '..', such as ${DEFAULT_STORAGE_PATH}`,
            },
            immutable('storagePath', 'models already on disk would be orphaned; create a new group instead'),
          ],
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
        persistentVolumeSpec: {
          type: 'object',
          'x-kubernetes-preserve-unknown-fields': true,
          description: 'Accepted for KServe compatibility; not used.',
        },
        persistentVolumeClaimSpec: {
          type: 'object',
          'x-kubernetes-preserve-unknown-fields': true,
          description: 'Accepted for KServe compatibility; not used.',
        },
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
        conditions,
        observedGeneration: { type: 'integer', format: 'int64' },
      },
    },
  },
  [
    { name: 'Limit', type: 'string', jsonPath: '.spec.storageLimit' },
    { name: 'Planned', type: 'string', jsonPath: '.status.usage' },
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
            enum: ['ModelDownloadPending', 'ModelDownloading', 'ModelDownloaded', 'ModelDownloadError'],
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
            },
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

const TM_SCHEMES = ['s3', 'gs', 'http', 'https', 'hf'];

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
              description: `Where the model comes from: ${TM_SCHEMES.map((x) => `${x}://`).join(', ')}. Taken from the node cache when a LocalModelCache holds it.`,
              'x-kubernetes-validations': [
                {
                  rule: `self.matches('^(${TM_SCHEMES.join('|')})://[^/]*/[^/].*$')`,
                  messageExpression: `'model.storageUri ' + self + ' is not supported: use ${TM_SCHEMES.map((x) => `${x}://`).join(', ')} with a path, e.g. s3://bucket/models/iris'`,
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
                ...(quantity('model.memory', '1Gi')['x-kubernetes-validations'] as unknown[]),
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

function crd(
  kind: string,
  plural: string,
  shortNames: string[],
  props: { spec: KubeObjectSchema; status: KubeObjectSchema },
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
