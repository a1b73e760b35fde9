import type { Logger } from 'pino';
import { sleep } from '../ops/backoff.ts';
import type { KubeClient } from './client.ts';
import { Informer } from './informer.ts';
import { CRDS } from './resources.ts';
import type { KubeObject, ResourceType } from './types.ts';

export interface KindsOptions {
  log?: Logger;
  /** How often to look again for CRDs that are not installed yet (default 30 s). */
  crdPollMs?: number;
}

/** What is known of an optional kind's CRD: not looked up yet, looked up and absent, installed (informer running). */
type CrdState = 'unchecked' | 'absent' | 'installed';

interface Kind {
  informer: Informer<KubeObject>;
  /** Set for kinds whose CRD may not exist (KServe's): the informer starts once it does. */
  crd?: { name: string; state: CrdState; listeners: Array<() => void> };
}

const crdName = (rt: ResourceType): string => `${rt.plural}.${rt.group}`;

/**
 * The process's informers, one per kind (and label selector), shared by every controller and webhook:
 * controller-runtime's manager cache. Informers of kinds whose CRD may be missing start once it exists,
 * found by one polling loop for all of them. Handlers must be registered before start().
 */
export class Kinds {
  readonly #client: KubeClient;
  readonly #log?: Logger;
  readonly #pollMs: number;
  readonly #kinds = new Map<string, Kind>();
  #signal?: AbortSignal;
  /** The signal of the running lookup loop, if one runs. */
  #polling?: AbortSignal;

  constructor(client: KubeClient, opts: KindsOptions = {}) {
    this.#client = client;
    this.#log = opts.log;
    this.#pollMs = opts.crdPollMs ?? 30_000;
  }

  #kind(rt: ResourceType, labelSelector: string | undefined, crd: boolean): Kind {
    const id = `${crdName(rt)}?${labelSelector ?? ''}`;
    let kind = this.#kinds.get(id);
    if (!kind) {
      const opts = { ...(labelSelector ? { labelSelector } : {}), ...(this.#log ? { log: this.#log } : {}) };
      kind = { informer: new Informer(this.#client, rt, opts) };
      if (crd) kind.crd = { name: crdName(rt), state: 'unchecked', listeners: [] };
      this.#kinds.set(id, kind);
      if (this.#running()) this.#startKind(kind, this.#signal as AbortSignal);
    }
    return kind;
  }

  /** The informer of a built-in kind (or one whose CRD this product installs): it starts with start(). */
  informer<T extends KubeObject>(rt: ResourceType, opts: { labelSelector?: string } = {}): Informer<T> {
    return this.#kind(rt, opts.labelSelector, false).informer as unknown as Informer<T>;
  }

  /** The informer of a kind whose CRD may be missing: empty until the CRD exists, then started once. */
  optional<T extends KubeObject>(rt: ResourceType): Informer<T> {
    return this.#kind(rt, undefined, true).informer as unknown as Informer<T>;
  }

  #crd(rt: ResourceType): NonNullable<Kind['crd']> {
    const crd = this.#kinds.get(`${crdName(rt)}?`)?.crd;
    if (!crd) throw new Error(`${crdName(rt)} is not an optional kind of this process (Internal)`);
    return crd;
  }

  /** Whether an optional kind's CRD was found (its informer runs). */
  installed(rt: ResourceType): boolean {
    return this.#crd(rt).state === 'installed';
  }

  /** Whether an optional kind's objects are known: its CRD is absent, or its informer has listed once. */
  known(rt: ResourceType): boolean {
    const state = this.#crd(rt).state;
    return state === 'absent' || (state === 'installed' && this.optional(rt).hasSynced);
  }

  /** Calls fn whenever what is known of an optional kind's CRD changes (first looked up, installed). */
  onCrd(rt: ResourceType, fn: () => void): void {
    this.#crd(rt).listeners.push(fn);
  }

  /** Resolves once an optional kind's CRD exists (after the lookup pass that found it), rejects on abort. */
  waitForCrd(rt: ResourceType, signal: AbortSignal): Promise<void> {
    const crd = this.#crd(rt);
    if (crd.state === 'installed') return Promise.resolve();
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason as Error);
      const onAbort = (): void => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      crd.listeners.push(() => {
        if (crd.state !== 'installed') return;
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  #running(): boolean {
    return this.#signal !== undefined && !this.#signal.aborted;
  }

  #startKind(kind: Kind, signal: AbortSignal): void {
    if (!kind.crd || kind.crd.state === 'installed') void kind.informer.start(signal);
    else if (!this.#polling || this.#polling.aborted) void this.#poll(signal);
  }

  /** Starts every informer (and the CRD lookups) until the signal aborts; a second call while running does nothing. */
  start(signal: AbortSignal): void {
    if (this.#running()) return;
    this.#signal = signal;
    for (const kind of this.#kinds.values()) this.#startKind(kind, signal);
  }

  /** Looks up every missing CRD each crdPollMs until all exist; listeners hear once per pass. */
  async #poll(signal: AbortSignal): Promise<void> {
    this.#polling = signal;
    try {
      for (;;) {
        const waiting = [...this.#kinds.values()].filter((k) => k.crd && k.crd.state !== 'installed');
        if (waiting.length === 0 || signal.aborted) return;
        const changed: Kind[] = [];
        for (const kind of waiting) {
          const crd = kind.crd as NonNullable<Kind['crd']>;
          try {
            if (await this.#client.get(CRDS, crd.name, { signal })) {
              crd.state = 'installed';
              void kind.informer.start(signal);
              this.#log?.info({ crd: crd.name }, 'CRD installed; watching');
              changed.push(kind);
            } else if (crd.state === 'unchecked') {
              crd.state = 'absent';
              changed.push(kind);
            }
          } catch (err) {
            if (signal.aborted) return;
            this.#log?.warn({ crd: crd.name, err: String((err as Error).message) }, 'could not look up a CRD');
          }
        }
        for (const kind of changed) for (const fn of kind.crd?.listeners ?? []) fn();
        await sleep(this.#pollMs, signal).catch(() => undefined);
      }
    } finally {
      if (this.#polling === signal) this.#polling = undefined;
    }
  }
}
