// The webhooks' serving certificate, kept in a Secret in cert-manager's layout (tls.crt, tls.key, ca.crt) so that
// every replica serves the same one: read from a Secret someone else issues (cert-manager), or generated here.
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import { isStatus, type KubeClient } from '../../kube/client.ts';
import { Informer } from '../../kube/informer.ts';
import { SECRETS } from '../../kube/resources.ts';
import type { Secret } from '../../kube/types.ts';
import { SerialPasses } from './serial.ts';
import { issueWebhookPki } from './x509.ts';

export interface TlsMaterial {
  cert: string;
  key: string;
  /** The CA that the webhook configurations' caBundle must hold (absent when the issuer gave none). */
  ca?: string;
}

/** Renew a generated serving certificate when it has less than this left. */
const RENEW_BEFORE_MS = 30 * 86_400_000;
const CHECK_EVERY_MS = 3_600_000;
const GENERATED_ANNOTATION = 'modelcache.io/generated-by';

export type SecretVerdict =
  { kind: 'use'; material: TlsMaterial } | { kind: 'issue'; why: string } | { kind: 'wait'; why: string };

const decode = (v: string | undefined): string => (v ? Buffer.from(v, 'base64').toString('utf8') : '');

/**
 * What to do with the Secret as found: use it; issue a new CA and certificate (only for a Secret this controller
 * generates: missing, unreadable, not covering `sans`, or expiring); or wait for its issuer (cert-manager).
 */
export function secretVerdict(
  secret: Secret | undefined,
  opts: { generate: boolean; sans: readonly string[]; now: Date },
): SecretVerdict {
  const name = secret?.metadata.name;
  const fail = (why: string): SecretVerdict => (opts.generate ? { kind: 'issue', why } : { kind: 'wait', why });
  if (!secret) return fail('the Secret does not exist yet');
  const cert = decode(secret.data?.['tls.crt']);
  const key = decode(secret.data?.['tls.key']);
  const ca = decode(secret.data?.['ca.crt']);
  if (!cert || !key) return fail(`Secret ${name} has no tls.crt and tls.key`);
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
  } catch (err) {
    return fail(`Secret ${name}: tls.crt is not a PEM certificate (${(err as Error).message})`);
  }
  if (opts.generate) {
    if (!ca) return fail(`Secret ${name} has no ca.crt`);
    if (new Date(x.validTo).getTime() - opts.now.getTime() < RENEW_BEFORE_MS)
      return fail(`the certificate in Secret ${name} expires on ${x.validTo}`);
    const uncovered = opts.sans.filter((n) => (/^[\d.]+$|:/.test(n) ? !x.checkIP(n) : !x.checkHost(n)));
    if (uncovered.length) return fail(`the certificate in Secret ${name} does not name ${uncovered.join(', ')}`);
  }
  return { kind: 'use', material: { cert, key, ...(ca ? { ca } : {}) } };
}

/** DNS names of a Service, and 127.0.0.1 (tests and port-forwards reach the webhook there). */
export function serviceSans(service: string, namespace: string): string[] {
  return [
    service,
    `${service}.${namespace}`,
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
    '127.0.0.1',
  ];
}

export interface TlsKeeperOptions {
  client: KubeClient;
  namespace: string;
  secretName: string;
  /** True: this controller issues the CA and certificate into the Secret; false: someone else does (cert-manager). */
  generate: boolean;
  sans: readonly string[];
  log: Logger;
}

/**
 * Watches the one Secret; whenever it changes (and hourly), decides again. Generated material is created with
 * `create` (a replica that loses the race uses the winner's) and renewed with a resourceVersion precondition.
 */
export class TlsKeeper {
  readonly #opts: TlsKeeperOptions;
  readonly #secret: Informer<Secret>;
  readonly #listeners: Array<(m: TlsMaterial) => void> = [];
  readonly #passes: SerialPasses;
  #current: TlsMaterial | undefined;
  #why = 'the webhook certificate is not loaded yet';

  constructor(opts: TlsKeeperOptions) {
    this.#opts = opts;
    this.#secret = new Informer<Secret>(opts.client, SECRETS, {
      namespace: opts.namespace,
      fieldSelector: `metadata.name=${opts.secretName}`,
      log: opts.log,
    });
    this.#passes = new SerialPasses(
      (signal) => this.#pass(signal),
      (err) => {
        this.#why = `webhook certificate: ${String((err as Error)?.message ?? err)}`;
        opts.log.warn({ err: this.#why, secret: opts.secretName }, 'webhook certificate not ready; will retry');
      },
    );
  }

  get current(): TlsMaterial | undefined {
    return this.#current;
  }

  /** Why no certificate is served yet (undefined once one is). */
  get unready(): string | undefined {
    return this.#current ? undefined : this.#why;
  }

  onChange(fn: (m: TlsMaterial) => void): void {
    this.#listeners.push(fn);
  }

  /** Runs until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const kick = (): void => this.#passes.kick(signal);
    this.#secret.on({ add: kick, update: kick, delete: kick });
    const timer = setInterval(kick, CHECK_EVERY_MS);
    timer.unref();
    signal.addEventListener('abort', () => clearInterval(timer), { once: true });
    const watching = this.#secret.start(signal);
    await this.#secret.waitForSync(signal).then(kick, () => undefined);
    await watching;
    await this.#passes.idle();
  }

  async #pass(signal: AbortSignal): Promise<void> {
    const o = this.#opts;
    const secret = this.#secret.get(`${o.namespace}/${o.secretName}`);
    const verdict = secretVerdict(secret, { generate: o.generate, sans: o.sans, now: new Date() });
    switch (verdict.kind) {
      case 'use':
        this.#use(verdict.material);
        return;
      case 'wait':
        this.#why = `waiting for Secret ${o.namespace}/${o.secretName} (cert-manager's layout): ${verdict.why}`;
        o.log.info({ secret: o.secretName, why: verdict.why }, 'waiting for the webhook certificate');
        return;
      case 'issue':
        await this.#issue(secret, verdict.why, signal);
        return;
    }
  }

  async #issue(old: Secret | undefined, why: string, signal: AbortSignal): Promise<void> {
    const o = this.#opts;
    const pki = issueWebhookPki(o.sans);
    const b64 = (s: string): string => Buffer.from(s).toString('base64');
    const data = { 'tls.crt': b64(pki.serving.cert), 'tls.key': b64(pki.serving.key), 'ca.crt': b64(pki.ca) };
    const annotations = { [GENERATED_ANNOTATION]: 'modelcache-controller' };
    o.log.info({ secret: o.secretName, why }, 'issuing a webhook CA and serving certificate');
    try {
      if (!old) {
        await o.client.create<Secret>(
          SECRETS,
          {
            apiVersion: 'v1',
            kind: 'Secret',
            type: 'kubernetes.io/tls',
            metadata: { name: o.secretName, namespace: o.namespace, annotations },
            data,
          } as Secret,
          { signal },
        );
      } else {
        await o.client.mergePatch(
          SECRETS,
          o.secretName,
          { metadata: { resourceVersion: old.metadata.resourceVersion, annotations }, data },
          { namespace: o.namespace, signal },
        );
      }
    } catch (err) {
      // Another replica wrote it first: the watch delivers theirs, which every replica then serves.
      if (isStatus(err, 409)) return;
      throw err;
    }
  }

  #use(m: TlsMaterial): void {
    const c = this.#current;
    if (c && c.cert === m.cert && c.key === m.key && c.ca === m.ca) return;
    this.#current = m;
    this.#opts.log.info({ secret: this.#opts.secretName }, 'webhook certificate loaded');
    for (const fn of this.#listeners) fn(m);
  }
}
