import type { Logger } from 'pino';
import { LOCAL_MODEL_NODES, type LocalModelNodeStatus } from '../api/types.ts';
import { isStatus, type KubeClient } from '../kube/client.ts';
import { createMergePatch } from '../kube/merge-patch.ts';

/** True when anything but byte counters and progress differs: states, reasons, which models are listed. */
function significant(a: LocalModelNodeStatus | undefined, b: LocalModelNodeStatus): boolean {
  const strip = (s: LocalModelNodeStatus | undefined): string =>
    JSON.stringify({
      modelStatus: s?.modelStatus ?? {},
      models: Object.fromEntries(Object.entries(s?.models ?? {}).map(([k, d]) => [k, { ...d, bytesDone: undefined }])),
      summary: s?.summary ? { ...s.summary, progress: undefined } : undefined,
      conditions: s?.conditions ?? [],
    });
  return strip(a) !== strip(b);
}

/**
 * Writes this node's LocalModelNode status: state changes at once, progress (bytesDone) at most once
 * per interval, nothing when nothing changed. Patches are computed against what was last written.
 */
export class StatusWriter {
  readonly #client: KubeClient;
  readonly #node: string;
  readonly #intervalMs: number;
  readonly #log: Logger;
  #written: LocalModelNodeStatus | undefined;
  /** uid of the object #written describes: a recreated LocalModelNode starts with an empty status. */
  #uid: string | undefined;
  #wanted: LocalModelNodeStatus | undefined;
  #lastWriteAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> = Promise.resolve();

  constructor(client: KubeClient, node: string, intervalMs: number, log: Logger) {
    this.#client = client;
    this.#node = node;
    this.#intervalMs = intervalMs;
    this.#log = log;
  }

  /** The object the apiserver holds now (from the informer): patches start from its status when it is new to us. */
  observed(uid: string | undefined, status: LocalModelNodeStatus | undefined): void {
    if (this.#written !== undefined && uid === this.#uid) return;
    this.#uid = uid;
    this.#written = status ?? {};
  }

  /** The status that should be there; written now or soon. */
  set(status: LocalModelNodeStatus): Promise<void> {
    this.#wanted = status;
    if (significant(this.#written, status) || Date.now() - this.#lastWriteAt >= this.#intervalMs) return this.#write();
    this.#timer ??= setTimeout(
      () => {
        this.#timer = undefined;
        void this.#write();
      },
      this.#intervalMs - (Date.now() - this.#lastWriteAt),
    );
    this.#timer.unref();
    return this.#writing;
  }

  /** Writes whatever is pending. */
  flush(): Promise<void> {
    return this.#write();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
  }

  #write(): Promise<void> {
    this.#writing = this.#writing.then(async () => {
      const wanted = this.#wanted;
      if (!wanted) return;
      const patch = createMergePatch(this.#written ?? {}, wanted);
      if (patch === undefined) return;
      try {
        await this.#client.patchStatus(LOCAL_MODEL_NODES, this.#node, patch);
        this.#written = wanted;
        this.#lastWriteAt = Date.now();
      } catch (err) {
        if (isStatus(err, 404)) return; // no LocalModelNode yet: nothing to report on
        this.#log.warn({ node: this.#node, err: String((err as Error).message) }, 'status write failed; will retry');
        this.#timer ??= setTimeout(() => {
          this.#timer = undefined;
          void this.#write();
        }, 1000);
      }
    });
    return this.#writing;
  }
}
