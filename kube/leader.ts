import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { sleep } from '../ops/backoff.ts';
import { isStatus, type KubeClient } from './client.ts';
import { LEASES } from './resources.ts';
import type { Lease } from './types.ts';

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  name: string;
  /** Defaults to hostname plus a random suffix. */
  identity?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log?: Logger;
}

/**
 * Lease-based leader election in the manner of client-go: a lease is free when its holder has not
 * renewed within leaseDuration *as observed by our own clock* (no trust in other machines' clocks);
 * every write carries the resourceVersion we read, so two candidates never both win.
 */
export class LeaderElector {
  readonly identity: string;
  readonly #o: Required<Omit<LeaderElectionOptions, 'log'>> & { log?: Logger };
  #observed?: { rv: string; holder: string; renew: string; at: number };

  constructor(opts: LeaderElectionOptions) {
    this.identity = opts.identity ?? `${hostname()}_${randomBytes(4).toString('hex')}`;
    this.#o = {
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      ...opts,
      identity: this.identity,
    };
  }

  /**
   * Campaigns until the signal aborts. While leader, `lead(signal)` runs; its signal aborts when
   * leadership is lost, after which we campaign again. On shutdown the lease is released.
   */
  async run(lead: (signal: AbortSignal) => Promise<void>, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (!(await this.#tryAcquireOrRenew(signal).catch(() => false))) {
        await sleep(this.#o.retryPeriodMs, signal).catch(() => undefined);
        continue;
      }
      this.#o.log?.info({ lease: this.#o.name, identity: this.identity }, 'became leader');
      const leading = new AbortController();
      const onStop = (): void => leading.abort(signal.reason);
      signal.addEventListener('abort', onStop, { once: true });
      const work = lead(AbortSignal.any([leading.signal, signal]));
      await this.#renewLoop(leading, signal);
      leading.abort(new Error('leadership lost'));
      await work.catch(() => undefined);
      signal.removeEventListener('abort', onStop);
      if (signal.aborted) await this.#release().catch(() => undefined);
      else this.#o.log?.warn({ lease: this.#o.name, identity: this.identity }, 'lost leadership');
    }
  }

  async #renewLoop(leading: AbortController, signal: AbortSignal): Promise<void> {
    let lastRenew = Date.now();
    while (!signal.aborted && !leading.signal.aborted) {
      await sleep(this.#o.retryPeriodMs, signal).catch(() => undefined);
      if (signal.aborted) return;
      const ok = await this.#tryAcquireOrRenew(signal).catch(() => false);
      if (ok) lastRenew = Date.now();
      else if (Date.now() - lastRenew > this.#o.renewDeadlineMs) return;
    }
  }

  async #tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const { client, namespace, name } = this.#o;
    const now = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    const spec = {
      holderIdentity: this.identity,
      leaseDurationSeconds: Math.ceil(this.#o.leaseDurationMs / 1000),
      renewTime: now,
    };
    const lease = await client.get<Lease>(LEASES, name, { namespace, signal });
    if (!lease) {
      try {
        await client.create<Lease>(
          LEASES,
          {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name, namespace },
            spec: { ...spec, acquireTime: now, leaseTransitions: 0 },
          },
          { signal },
        );
        return true;
      } catch (err) {
        if (isStatus(err, 409)) return false;
        throw err;
      }
    }
    const holder = lease.spec.holderIdentity ?? '';
    const renew = lease.spec.renewTime ?? '';
    const rv = lease.metadata.resourceVersion ?? '';
    if (!this.#observed || this.#observed.holder !== holder || this.#observed.renew !== renew) {
      this.#observed = { rv, holder, renew, at: Date.now() };
    }
    const mine = holder === this.identity;
    const expired = Date.now() - this.#observed.at > (lease.spec.leaseDurationSeconds ?? 15) * 1000;
    if (!mine && holder && !expired) return false;
    const patch = {
      metadata: { resourceVersion: rv },
      spec: mine ? spec : { ...spec, acquireTime: now, leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 },
    };
    try {
      await client.mergePatch(LEASES, name, patch, { namespace, signal });
      return true;
    } catch (err) {
      if (isStatus(err, 409)) return false;
      throw err;
    }
  }

  /** Gives the lease up so a standby takes over at once instead of after leaseDuration. */
  async #release(): Promise<void> {
    const { client, namespace, name } = this.#o;
    const lease = await client.get<Lease>(LEASES, name, { namespace });
    if (lease?.spec.holderIdentity !== this.identity) return;
    await client.mergePatch(
      LEASES,
      name,
      {
        metadata: { resourceVersion: lease.metadata.resourceVersion },
        spec: { holderIdentity: null, leaseDurationSeconds: 1 },
      },
      { namespace },
    );
    this.#o.log?.info({ lease: name, identity: this.identity }, 'released leadership');
  }
}
