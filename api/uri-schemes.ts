// The URI schemes our resources accept, listed once: the CRD schema's rules are generated from these
// lists, and download/registry.ts checks at load that it has exactly one source for each.

/** Schemes a LocalModelCache's spec.sourceModelUri may use: each is a source of the daemon. */
export const SOURCE_SCHEMES = ['http', 'https', 's3', 'gs', 'hf', 'file'] as const;

export type SourceScheme = (typeof SOURCE_SCHEMES)[number];

/** Schemes a TrainedModel's spec.model.storageUri may use: the agent's sources (file:// is node-local). */
export const TRAINED_MODEL_SCHEMES = ['s3', 'gs', 'http', 'https', 'hf'] as const satisfies readonly SourceScheme[];
