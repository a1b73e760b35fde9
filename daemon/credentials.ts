import type { LocalModelInfo } from '../api/types.ts';
import { KubeApiError, type KubeClient } from '../kube/client.ts';
import { SECRETS, SERVICE_ACCOUNTS } from '../kube/resources.ts';
import type { KubeObject, Secret } from '../kube/types.ts';
import { DownloadError } from '../download/errors.ts';
import { credentialsFromEnv } from '../download/env-credentials.ts';
import { SOURCE_REGISTRY } from '../download/registry.ts';
import type { SourceCredentials } from '../download/types.ts';
import { STORAGE_CONFIG_SECRET, storageConfigKey, storageConfigValues } from './storage-config.ts';

interface ServiceAccount extends KubeObject {
  secrets?: Array<{ name?: string }>;
}

/** KServe's Secret annotations (its S3 Secrets' endpoint, region…), as the variables the sources read. */
const KSERVE_ANNOTATIONS: ReadonlyArray<readonly [string, string]> = SOURCE_REGISTRY.flatMap((s) =>
  Object.entries(s.secretAnnotations ?? {}),
);

/** A Secret's values (decoded) and, for KServe-style Secrets, its annotations as variables. */
function secretValues(secret: Secret): SourceCredentials {
  const out: Record<string, string> = {};
  for (const [annotation, name] of KSERVE_ANNOTATIONS) {
    const v = secret.metadata.annotations?.[annotation];
    if (v !== undefined) out[name] = v;
  }
  for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64').toString('utf8');
  return out;
}

/**
 * Credentials for a model's source, most specific last: the daemon's environment, the Secret its
 * node group names, the Secrets attached to the cache's service account (KServe's
 * `spec.serviceAccountName`), then the cache's entry of KServe's storage-config Secret (`spec.storage`). Everything is read in the daemon's namespace, fresh for every
 * download, so a rotated Secret is used at once.
 */
export class SourceCredentialsReader {
  readonly #client: KubeClient;
  readonly #namespace: string;
  readonly #env: SourceCredentials;

  constructor(client: KubeClient, namespace: string, env: NodeJS.ProcessEnv) {
    this.#client = client;
    this.#namespace = namespace;
    this.#env = credentialsFromEnv(env);
  }

  async for(model: LocalModelInfo, signal?: AbortSignal): Promise<SourceCredentials> {
    let creds = this.#env;
    if (model.credentialsSecret) {
      const where = `Secret ${this.#namespace}/${model.credentialsSecret} (spec.credentials.secretName of node group ${model.nodeGroup ?? '?'})`;
      creds = {
        ...creds,
        ...secretValues(
          await this.#read<Secret>(
            SECRETS,
            model.credentialsSecret,
            where,
            "with the source's keys (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, HF_TOKEN, …)",
            signal,
          ),
        ),
      };
    }
    if (model.serviceAccountName) {
      const saWhere = `ServiceAccount ${this.#namespace}/${model.serviceAccountName} (spec.serviceAccountName of cache ${model.modelName})`;
      const sa = await this.#read<ServiceAccount>(
        SERVICE_ACCOUNTS,
        model.serviceAccountName,
        saWhere,
        "and attach the source's Secrets to it (secrets: [{name: …}])",
        signal,
      );
      for (const ref of sa.secrets ?? []) {
        if (!ref.name) continue;
        const where = `Secret ${this.#namespace}/${ref.name} (attached to ${saWhere})`;
        creds = {
          ...creds,
          ...secretValues(
            await this.#read<Secret>(SECRETS, ref.name, where, 'or detach it from the service account', signal),
          ),
        };
      }
    }
    if (model.storage) {
      const key = storageConfigKey(model.storage.key, model.sourceModelUri);
      const where = `entry '${key}' of Secret ${this.#namespace}/${STORAGE_CONFIG_SECRET} (spec.storage of cache ${model.modelName})`;
      const secret = await this.#read<Secret>(
        SECRETS,
        STORAGE_CONFIG_SECRET,
        `Secret ${this.#namespace}/${STORAGE_CONFIG_SECRET} (spec.storage of cache ${model.modelName})`,
        `with an entry '${key}' (KServe's storage-config)`,
        signal,
      );
      const entry = secret.data?.[key];
      if (entry === undefined)
        throw new DownloadError(
          'AccessDenied',
          `${where} does not exist: add it, or set spec.storage.key to one of: ${Object.keys(secret.data ?? {}).join(', ') || '(none)'}`,
        );
      creds = {
        ...creds,
        ...storageConfigValues(Buffer.from(entry, 'base64').toString('utf8'), model.storage.parameters, where),
      };
    }
    return creds;
  }

  /** One object in the daemon's namespace; missing or forbidden is AccessDenied naming it and the fix. */
  async #read<T extends KubeObject>(
    rt: typeof SECRETS,
    name: string,
    where: string,
    fix: string,
    signal?: AbortSignal,
  ): Promise<T> {
    let obj: T | undefined;
    try {
      obj = await this.#client.get<T>(rt, name, { namespace: this.#namespace, signal });
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 403) {
        throw new DownloadError(
          'AccessDenied',
          `the daemon may not read ${where}: its Role in ${this.#namespace} must allow get on ${rt.plural}`,
        );
      }
      throw new DownloadError('SourceUnavailable', `could not read ${where}: ${(err as Error).message}`, {
        retryable: true,
        cause: err,
      });
    }
    if (!obj)
      throw new DownloadError('AccessDenied', `${where} does not exist: create it in ${this.#namespace} ${fix}`);
    return obj;
  }
}
