import { Agent, ProxyAgent, fetch, type Dispatcher } from 'undici';
import { loadConnection, type Connection, type LoadOptions } from './config.ts';
import type { KubeObject, ObjectList, ResourceType } from './types.ts';

/** Field manager for server-side apply and the managedFields of every write. */
const FIELD_MANAGER = 'modelcache';

/** An error answer from the apiserver, with the HTTP status and the Status object's reason. */
export class KubeApiError extends Error {
  readonly status: number;
  readonly reason: string;
  readonly details: unknown;
  constructor(status: number, reason: string, message: string, details?: unknown) {
    super(message);
    this.name = 'KubeApiError';
    this.status = status;
    this.reason = reason;
    this.details = details;
  }
}

/** True for an apiserver answer with that HTTP status. */
export function isStatus(err: unknown, status: number): boolean {
  return err instanceof KubeApiError && err.status === status;
}

export type { LoadOptions } from './config.ts';

export interface RequestOpts {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  /** Accept header (default application/json); e.g. a server-side Table as kubectl get asks for. */
  accept?: string;
  signal?: AbortSignal;
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  resourceVersion?: string;
  limit?: number;
  signal?: AbortSignal;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface WriteOptions {
  namespace?: string;
  subresource?: string;
  signal?: AbortSignal;
}

/**
 * A dynamic client over the REST API. Where and how to connect comes from kube/config.ts (kubectl's
 * rules); one connection pool is kept per client, and streaming watches are read line by line
 * with an AbortSignal.
 */
export class KubeClient {
  readonly server: string;
  readonly #conn: Connection;
  #dispatcher: Promise<Dispatcher> | undefined;

  constructor(conn: Connection) {
    this.#conn = conn;
    this.server = conn.server;
  }

  /** One pooled dispatcher per client, from the connection's TLS material (CA, client cert) and proxy. */
  #pool(): Promise<Dispatcher> {
    this.#dispatcher ??= (async () => {
      const tls = await this.#conn.tls();
      if (this.#conn.proxy) return new ProxyAgent({ uri: this.#conn.proxy, requestTls: tls });
      return new Agent({ connect: tls, connections: 64 });
    })();
    return this.#dispatcher;
  }

  static fromKubeconfig(opts: LoadOptions = {}): KubeClient {
    return new KubeClient(loadConnection(opts));
  }

  /** Closes pooled connections. */
  async close(): Promise<void> {
    await (await this.#dispatcher)?.close();
  }

  async #headers(contentType?: string, accept = 'application/json'): Promise<Record<string, string>> {
    const headers: Record<string, string> = { accept, ...(await this.#conn.headers()) };
    if (contentType) headers['content-type'] = contentType;
    return headers;
  }

  #url(path: string, query?: RequestOpts['query']): string {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(query ?? {}))
      if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    return url.toString();
  }

  async #fetch(method: string, path: string, opts: RequestOpts): Promise<Response> {
    const res = await fetch(this.#url(path, opts.query), {
      method,
      headers: await this.#headers(
        opts.body !== undefined ? (opts.contentType ?? 'application/json') : undefined,
        opts.accept,
      ),
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      dispatcher: await this.#pool(),
      signal: opts.signal,
    });
    if (!res.ok) throw await toApiError(res, method, path);
    return res as unknown as Response;
  }

  /** One request; JSON in, JSON out; non-2xx answers throw KubeApiError. */
  async request<T>(method: string, path: string, opts: RequestOpts = {}): Promise<T> {
    const res = await this.#fetch(method, path, opts);
    return (await res.json()) as T;
  }

  /** REST path of a resource collection or object. */
  path(rt: ResourceType, opts: { namespace?: string; name?: string; subresource?: string } = {}): string {
    let p = rt.group ? `/apis/${rt.group}/${rt.version}` : `/api/${rt.version}`;
    if (rt.namespaced && opts.namespace) p += `/namespaces/${encodeURIComponent(opts.namespace)}`;
    p += `/${rt.plural}`;
    if (opts.name) p += `/${encodeURIComponent(opts.name)}`;
    if (opts.subresource) p += `/${opts.subresource}`;
    return p;
  }

  /** The object, or undefined when it does not exist. */
  async get<T extends KubeObject>(
    rt: ResourceType,
    name: string,
    opts: { namespace?: string; signal?: AbortSignal } = {},
  ): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', this.path(rt, { ...opts, name }), { signal: opts.signal });
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /** Lists every page; the result's resourceVersion is where a watch continues. */
  async list<T extends KubeObject>(rt: ResourceType, opts: ListOptions = {}): Promise<ObjectList<T>> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv: string | undefined;
    do {
      const page = await this.request<ObjectList<T>>('GET', this.path(rt, opts), {
        query: {
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
          limit: opts.limit ?? 500,
          continue: cont,
          resourceVersion: cont ? undefined : opts.resourceVersion,
        },
        signal: opts.signal,
      });
      items.push(...page.items);
      cont = page.metadata.continue || undefined;
      rv = page.metadata.resourceVersion;
    } while (cont);
    return { metadata: { resourceVersion: rv }, items };
  }

  async create<T extends KubeObject>(rt: ResourceType, obj: T, opts: WriteOptions = {}): Promise<T> {
    const namespace = opts.namespace ?? obj.metadata.namespace;
    return this.request<T>('POST', this.path(rt, { namespace }), {
      body: obj,
      query: { fieldManager: FIELD_MANAGER },
      signal: opts.signal,
    });
  }

  /** JSON merge patch (RFC 7386). Put metadata.resourceVersion in the patch to make it conditional. */
  async mergePatch<T extends KubeObject>(
    rt: ResourceType,
    name: string,
    patch: unknown,
    opts: WriteOptions = {},
  ): Promise<T> {
    return this.request<T>('PATCH', this.path(rt, { ...opts, name }), {
      body: patch,
      contentType: 'application/merge-patch+json',
      query: { fieldManager: FIELD_MANAGER },
      signal: opts.signal,
    });
  }

  /** Merge patch of the status subresource. */
  async patchStatus<T extends KubeObject>(
    rt: ResourceType,
    name: string,
    status: unknown,
    opts: Omit<WriteOptions, 'subresource'> = {},
  ): Promise<T> {
    return this.mergePatch<T>(rt, name, { status }, { ...opts, subresource: 'status' });
  }

  /** Server-side apply with field manager `modelcache`; conflicts are forced (we own these fields). */
  async apply<T extends KubeObject>(
    rt: ResourceType,
    obj: T,
    opts: WriteOptions & { fieldManager?: string } = {},
  ): Promise<T> {
    const name = obj.metadata.name;
    if (!name) throw new Error('apply needs metadata.name');
    const namespace = opts.namespace ?? obj.metadata.namespace;
    return this.request<T>('PATCH', this.path(rt, { namespace, name, subresource: opts.subresource }), {
      body: obj,
      contentType: 'application/apply-patch+yaml',
      query: { fieldManager: opts.fieldManager ?? FIELD_MANAGER, force: true },
      signal: opts.signal,
    });
  }

  /** Deletes; a missing object is not an error (returns false). */
  async delete(
    rt: ResourceType,
    name: string,
    opts: {
      namespace?: string;
      propagationPolicy?: 'Background' | 'Foreground' | 'Orphan';
      uid?: string;
      signal?: AbortSignal;
    } = {},
  ): Promise<boolean> {
    try {
      await this.request('DELETE', this.path(rt, { namespace: opts.namespace, name }), {
        body: {
          kind: 'DeleteOptions',
          apiVersion: 'v1',
          ...(opts.propagationPolicy ? { propagationPolicy: opts.propagationPolicy } : {}),
          ...(opts.uid ? { preconditions: { uid: opts.uid } } : {}),
        },
        signal: opts.signal,
      });
      return true;
    } catch (err) {
      if (isStatus(err, 404)) return false;
      throw err;
    }
  }

  /**
   * A watch stream from `resourceVersion`: yields events until the server closes it or the signal aborts.
   * An ERROR event (for example 410 Gone) is yielded like the others; the caller decides.
   */
  async *watch<T extends KubeObject>(
    rt: ResourceType,
    opts: ListOptions & { timeoutSeconds?: number; allowBookmarks?: boolean },
  ): AsyncGenerator<WatchEvent<T>> {
    const res = await this.#fetch('GET', this.path(rt, opts), {
      query: {
        watch: true,
        resourceVersion: opts.resourceVersion,
        labelSelector: opts.labelSelector,
        fieldSelector: opts.fieldSelector,
        allowWatchBookmarks: opts.allowBookmarks ?? true,
        timeoutSeconds: opts.timeoutSeconds,
      },
      signal: opts.signal,
    });
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line) yield JSON.parse(line) as WatchEvent<T>;
      }
    }
  }
}

async function toApiError(
  res: { status: number; statusText: string; text(): Promise<string> },
  method: string,
  path: string,
): Promise<KubeApiError> {
  const text = await res.text().catch(() => '');
  try {
    const status = JSON.parse(text) as { reason?: string; message?: string; details?: unknown };
    return new KubeApiError(res.status, status.reason ?? res.statusText, status.message ?? text, status.details);
  } catch {
    return new KubeApiError(res.status, res.statusText, `${method} ${path}: ${res.status} ${text.slice(0, 500)}`);
  }
}
