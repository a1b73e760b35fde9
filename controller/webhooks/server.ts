// The admission webhooks' HTTPS shell: reads an AdmissionReview, asks the pure decision for its kind, answers.
// Served by every controller replica (not only the leader), from the informers every replica keeps warm.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { LocalModelCache, LocalModelNodeGroup } from '../../api/types.ts';
import type { KubeClient } from '../../kube/client.ts';
import type { Informer } from '../../kube/informer.ts';
import { parseAddr } from '../../ops/server.ts';
import { admissionResponse, parseAdmissionReview, type AdmissionRequest, type Decision } from './admission.ts';
import { CaBundleKeeper } from './ca-bundle.ts';
import { defaultServing } from './isvc-defaulter.ts';
import { mutatePod, type PodShape } from './pod-mutator.ts';
import { serviceSans, TlsKeeper } from './tls.ts';

const POD_PATH = '/mutate-pods';
const SERVING_PATH = '/default-serving';
/** An AdmissionReview of a large pod stays far below this. */
const MAX_BODY_BYTES = 3 * 1024 * 1024;

export interface WebhooksOptions {
  client: KubeClient;
  log: Logger;
  /** host:port of the HTTPS listener. */
  listen: string;
  /** Namespace of the Service and of the certificate's Secret. */
  namespace: string;
  /** The Service in front of the webhooks: its DNS names go into a generated certificate. */
  service: string;
  /** A Secret issued by someone else (cert-manager) to serve from; without it one is generated as `<service>-tls`. */
  certSecret?: string;
  /** The MutatingWebhookConfiguration whose caBundle this controller keeps. */
  configuration: string;
  caches: Informer<LocalModelCache>;
  groups: Informer<LocalModelNodeGroup>;
}

export interface Webhooks {
  url: string;
  /** Why the webhooks cannot answer yet (undefined once they can). */
  unready(): string | undefined;
  /** Settles when the signal aborts and everything has stopped. */
  done: Promise<void>;
}

/** The decision for one request, from the caches as this replica sees them. */
function decide(
  path: string,
  req: AdmissionRequest,
  caches: readonly LocalModelCache[],
  groups: ReadonlyMap<string, LocalModelNodeGroup>,
): Decision {
  if (path === POD_PATH && req.kind.kind === 'Pod') return mutatePod(req.object as PodShape, caches, groups);
  if (path === SERVING_PATH && (req.kind.kind === 'InferenceService' || req.kind.kind === 'LLMInferenceService'))
    return defaultServing(req.object, req.kind.kind, caches, groups);
  return { allowed: true, patch: [], warnings: [`modelcache has no webhook for ${req.kind.kind} at ${path}`] };
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw Object.assign(new Error('AdmissionReview too large'), { status: 413 });
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw Object.assign(new Error('the body is not JSON'), { status: 400 });
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain' : 'application/json' });
  res.end(text);
}

/** Starts the HTTPS listener at once (handshakes fail until a certificate is loaded), the certificate and caBundle keepers. */
export async function startWebhooks(opts: WebhooksOptions, signal: AbortSignal): Promise<Webhooks> {
  const log = opts.log.child({ part: 'webhooks' });
  const tls = new TlsKeeper({
    client: opts.client,
    namespace: opts.namespace,
    secretName: opts.certSecret ?? `${opts.service}-tls`,
    generate: opts.certSecret === undefined,
    sans: serviceSans(opts.service, opts.namespace),
    log,
  });
  const bundle = new CaBundleKeeper(opts.client, opts.configuration, log);
  const synced = (): boolean => opts.caches.hasSynced && opts.groups.hasSynced;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.method !== 'POST' || (path !== POD_PATH && path !== SERVING_PATH))
      return send(res, 404, `modelcache webhooks: POST ${POD_PATH} or ${SERVING_PATH}`);
    const parsed = parseAdmissionReview(await readBody(req));
    if ('error' in parsed) return send(res, 400, parsed.error);
    let decision: Decision;
    if (!synced()) {
      decision =
        path === POD_PATH
          ? { allowed: false, message: 'modelcache is still loading LocalModelCaches: create the pod again shortly' }
          : {
              allowed: true,
              patch: [],
              warnings: ['modelcache is still loading LocalModelCaches: no local model set'],
            };
    } else {
      const groups = new Map(opts.groups.list().map((g) => [g.metadata.name ?? '', g]));
      decision = decide(path, parsed, opts.caches.list(), groups);
    }
    if (!decision.allowed)
      log.info({ kind: parsed.kind.kind, namespace: parsed.namespace, reason: decision.message }, 'admission denied');
    send(res, 200, admissionResponse(parsed.uid, decision));
  }

  const server: Server = createServer({ minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = (err as { status?: number })?.status ?? 500;
      if (status === 500) log.error({ err: String((err as Error)?.message ?? err) }, 'webhook failed (Internal)');
      if (!res.headersSent) send(res, status, `modelcache webhook: ${String((err as Error)?.message ?? err)}`);
      else res.destroy();
    });
  });
  tls.onChange((m) => {
    server.setSecureContext({ cert: m.cert, key: m.key });
    if (m.ca) bundle.setCa(m.ca, signal);
  });
  const { host, port } = parseAddr(opts.listen, 'webhook-listen');
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`--webhook-listen ${opts.listen}: cannot listen there (${err.message})`, { cause: err })),
    );
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const url = `https://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  const stopped = new Promise<void>((resolve) => {
    const stop = (): void => {
      server.close(() => resolve());
      server.closeAllConnections();
    };
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
  });
  const done = Promise.all([tls.run(signal), bundle.run(signal), stopped]).then(() => undefined);
  log.info(
    { url, secret: opts.certSecret ?? `${opts.service}-tls`, configuration: opts.configuration },
    'webhooks listening',
  );
  return {
    url,
    unready: () => tls.unready ?? (synced() ? undefined : 'caches not synced'),
    done,
  };
}
