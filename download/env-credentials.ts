import type { SourceCredentials } from './types.ts';

/** Environment variables that configure sources (the stores' own tools read the same names). */
const SOURCE_ENV =
  /^(AWS_\w+|S3_\w+|HF_\w+|HUGGING_FACE_HUB_TOKEN|STORAGE_EMULATOR_HOST|GOOGLE_OAUTH_ACCESS_TOKEN|GCE_METADATA_HOST)$/;

/** The source settings found in a process environment (nothing else of it). */
export function credentialsFromEnv(env: NodeJS.ProcessEnv): SourceCredentials {
  return Object.fromEntries(Object.entries(env).filter(([k, v]) => SOURCE_ENV.test(k) && v !== undefined));
}
