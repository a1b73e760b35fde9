import type { Logger } from 'pino';
import { createHash } from 'node:crypto';
import { isStatus, type KubeClient } from './client.ts';
import { EVENTS } from './resources.ts';
import type { KubeObject } from './types.ts';

export type EventType = 'Normal' | 'Warning';

/**
 * Writes core/v1 Events about our objects (what `kubectl describe` shows). The same event repeated
 * is one Event object whose count goes up, not a new object each time. Events of cluster-scoped
 * objects go to the `default` namespace, as Kubernetes does. Failures are logged, never thrown:
 * an Event is a courtesy, not part of reconciling.
 */
export class EventRecorder {
  readonly #client: KubeClient;
  readonly #component: string;
  readonly #log?: Logger;
  readonly #seen = new Map<string, number>();

  constructor(client: KubeClient, component: string, log?: Logger) {
    this.#client = client;
    this.#component = component;
    this.#log = log;
  }

  async record(obj: KubeObject, type: EventType, reason: string, message: string): Promise<void> {
    const namespace = obj.metadata.namespace ?? 'default';
    const digest = createHash('sha256')
      .update(`${obj.metadata.uid}/${type}/${reason}/${message}`)
      .digest('hex')
      .slice(0, 16);
    const name = `${obj.metadata.name}.${digest}`;
    const now = new Date().toISOString();
    const count = (this.#seen.get(name) ?? 0) + 1;
    try {
      if (count > 1) {
        try {
          await this.#client.mergePatch(EVENTS, name, { count, lastTimestamp: now }, { namespace });
          this.#seen.set(name, count);
          return;
        } catch (err) {
          if (!isStatus(err, 404)) throw err;
        }
      }
      try {
        await this.#client.create(EVENTS, {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { name, namespace },
          involvedObject: {
            apiVersion: obj.apiVersion,
            kind: obj.kind,
            name: obj.metadata.name,
            uid: obj.metadata.uid,
            resourceVersion: obj.metadata.resourceVersion,
            ...(obj.metadata.namespace ? { namespace: obj.metadata.namespace } : {}),
          },
          type,
          reason,
          message: message.slice(0, 1024),
          source: { component: this.#component },
          reportingComponent: this.#component,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        } as KubeObject);
        this.#seen.set(name, 1);
      } catch (err) {
        if (!isStatus(err, 409)) throw err;
        // Written by an earlier run of us: count on from here.
        await this.#client.mergePatch(EVENTS, name, { lastTimestamp: now }, { namespace });
        this.#seen.set(name, 1);
      }
      if (this.#seen.size > 5000) this.#seen.clear();
    } catch (err) {
      this.#log?.warn(
        { object: obj.metadata.name, reason, err: String((err as Error).message) },
        'could not write Event',
      );
    }
  }
}
