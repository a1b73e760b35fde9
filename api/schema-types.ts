export { GROUP, VERSION, DEFAULT_STORAGE_PATH } from './types.ts';
/** A JSON-schema node of a CRD (loosely typed: the apiserver is the validator). */
export type KubeObjectSchema = Record<string, unknown>;
