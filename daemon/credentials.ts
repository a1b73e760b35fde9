import type { LocalModelInfo } from '../api/types.ts';
import { KubeApiError, type KubeClient } from '../kube/client.ts';
import { SECRETS } from '../kube/resources.ts';
import type { KubeObject } from '../kube/types.ts';
import { DownloadError } from '../download/errors.ts';
import { credentialsFromEnv } from '../download/env-credentials.ts';
import type { SourceCredentials } from '../download/types.ts';

interface Secret extends KubeObject {
  data?: Record<string, string>;
}

/**
 * Credentials for a model's source: the daemon's environment, overlaid with the data of the
 * Secret its node group names (read fresh for every download, so a rotated Secret is used at once).
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
    const name = model.credentialsSecret;
    if (!name) return this.#env;
    const where = `Secret ${this.#namespace}/${name} (spec.credentials.secretName of node group ${model.nodeGroup ?? '?'})`;
    let secret: Secret | undefined;
    try {
      secret = await this.#client.get<Secret>(SECRETS, name, { namespace: this.#namespace, signal });
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 403) {
        throw new DownloadError('AccessDenied', `the daemon may not read ${where}: its Role in ${this.#namespace} must allow get on secrets`);
      }
      throw new DownloadError('SourceUnavailable', `could not read ${where}: ${(err as Error).message}`, { retryable: true, cause: err });
    }
    if (!secret) throw new DownloadError('AccessDenied', `${where} does not exist: create it in ${this.#namespace} with the source's keys (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, HF_TOKEN, …)`);
    const data = Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
    return { ...this.#env, ...data };
  }
}
