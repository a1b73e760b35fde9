// The states a LocalModelNode reports per model and a LocalModelCache per node, listed once: the CRD
// schema's enums are these lists, and api/types.ts derives ModelState and NodeState from the schema.

/** A LocalModelCache's status.nodeStatus values (KServe's NodeStatus). */
export const NODE_STATES = [
  'NodeNotReady',
  'NodeDownloadPending',
  'NodeDownloading',
  'NodeDownloaded',
  'NodeDownloadError',
] as const;

/** A LocalModelNode's status.modelStatus values (KServe's ModelStatus). */
export const MODEL_STATES = [
  'ModelDownloadPending',
  'ModelDownloading',
  'ModelDownloaded',
  'ModelDownloadError',
] as const;

/**
 * The LocalModelNode condition the daemon writes while some wanted model's group keeps its models in another host
 * directory than the daemon's root: status False, reason StoragePathMismatch (never True: absent when all match).
 * The controller turns its transitions into Events.
 */
export const STORAGE_PATH_CONDITION = 'StoragePathMatches';
