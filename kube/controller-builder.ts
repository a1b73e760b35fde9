import type { InformerHandlers, Informer } from './informer.ts';
import { runReconciler, type ReconcileOutcome, type ReconcileResult } from './reconciler.ts';
import type { KubeObject } from './types.ts';
import { WorkQueue } from './workqueue.ts';

/** A controller's typed key: the object it reconciles. Its string form lives inside the work queue only. */
export interface ObjectRef {
  namespace?: string;
  name: string;
}

/** The key of an object (namespace only when it has one). */
export function refOf(obj: KubeObject): ObjectRef {
  const { namespace, name = '' } = obj.metadata;
  return namespace ? { namespace, name } : { name };
}

/** `namespace/name` or `name`: the queue's string, and the key of the object in an informer. */
export function formatRef(ref: ObjectRef): string {
  return ref.namespace ? `${ref.namespace}/${ref.name}` : ref.name;
}

function parseRef(key: string): ObjectRef {
  const i = key.indexOf('/');
  return i < 0 ? { name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/** Anything that delivers object events: an informer, or a derived view with the same handlers. */
export interface Source<T> {
  on(handlers: InformerHandlers<T>): unknown;
}

export interface WatchOptions<T> {
  /** Which updates wake the controller (default: every one). Adds and deletes always do. */
  update?: (oldObj: T, newObj: T) => boolean;
}

export type Reconcile = (key: ObjectRef, signal: AbortSignal) => Promise<ReconcileResult | void>;

export interface RunOptions {
  workers: number;
  /** Every this many ms, every key is queued again (level-based safety net). */
  resyncMs?: number;
  /** Called once per reconcile, for metrics and logs. */
  observe?: (key: ObjectRef, outcome: ReconcileOutcome, durationMs: number, err: unknown, failures: number) => void;
}

type Enqueue = (key: ObjectRef) => void;

function watch<T>(source: Source<T>, map: (obj: T) => Iterable<ObjectRef>, opts: WatchOptions<T>, add: Enqueue): void {
  const fire = (obj: T): void => {
    for (const key of map(obj)) add(key);
  };
  source.on({
    add: fire,
    delete: fire,
    update: (a, b) => {
      if (opts.update && !opts.update(a, b)) return;
      fire(a);
      fire(b);
    },
  });
}

/**
 * Declares one controller in the style of controller-runtime's builder: `for` the primary kind,
 * `owns` children found by owner reference, `watches` other sources with a map to keys. Events only
 * enqueue keys; complete() wires them to the controller's own queue.
 */
export class ControllerBuilder {
  readonly #name: string;
  readonly #watches: Array<(add: Enqueue) => void> = [];
  #all?: () => Iterable<ObjectRef>;
  #primaryNamespaced = false;

  constructor(name: string) {
    this.#name = name;
  }

  /** The primary kind: each of its objects is a key; every one of them is what a resync queues. */
  for<T extends KubeObject>(informer: Informer<T>, opts: WatchOptions<T> = {}): this {
    this.#primaryNamespaced = informer.resource.namespaced;
    this.#all ??= () => informer.list().map(refOf);
    this.#watches.push((add) => watch(informer, (o) => [refOf(o)], opts, add));
    return this;
  }

  /** Children that name their primary in an owner reference of `ownerKind`. */
  owns<T extends KubeObject>(source: Source<T>, ownerKind: string): this {
    const map = (obj: T): ObjectRef[] =>
      (obj.metadata.ownerReferences ?? [])
        .filter((o) => o.kind === ownerKind)
        .map((o) =>
          this.#primaryNamespaced && obj.metadata.namespace
            ? { namespace: obj.metadata.namespace, name: o.name }
            : { name: o.name },
        );
    this.#watches.push((add) => watch(source, map, {}, add));
    return this;
  }

  /** Another source, mapped to the keys it concerns (on an update: those of the old and the new object). */
  watches<T>(source: Source<T>, map: (obj: T) => Iterable<ObjectRef>, opts: WatchOptions<T> = {}): this {
    this.#watches.push((add) => watch(source, map, opts, add));
    return this;
  }

  /** Every key (what a resync queues), when it is more than the primary kind's objects. */
  all(keys: () => Iterable<ObjectRef>): this {
    this.#all = keys;
    return this;
  }

  complete(reconcile: Reconcile): Controller {
    const controller = new Controller(this.#name, this.#all ?? (() => []), reconcile);
    for (const w of this.#watches) w((key) => controller.enqueue(key));
    return controller;
  }
}

/** One controller: its own queue, keys of one primary kind, reconciled only inside run() (while leading). */
export class Controller {
  readonly name: string;
  readonly #all: () => Iterable<ObjectRef>;
  readonly #reconcile: Reconcile;
  /** Replaced at each run(): the previous one was shut down when its term of leadership ended. */
  #queue = new WorkQueue();
  /** Where keys go: this controller's queue, or the queue of the group it runs in. */
  #sink = (key: ObjectRef): void => this.#queue.add(formatRef(key));

  constructor(name: string, all: () => Iterable<ObjectRef>, reconcile: Reconcile) {
    this.name = name;
    this.#all = all;
    this.#reconcile = reconcile;
  }

  enqueue(key: ObjectRef): void {
    this.#sink(key);
  }

  /** Sends keys to a group's queue from now on (see ControllerGroup). */
  joinGroup(sink: (key: ObjectRef) => void): void {
    this.#sink = sink;
  }

  /** Reconciles one key (what a group's workers call). */
  reconcileKey(key: ObjectRef, signal: AbortSignal): Promise<ReconcileResult | void> {
    return this.#reconcile(key, signal);
  }

  /** Queues every key now (what a periodic resync does). */
  resync(): void {
    for (const key of this.#all()) this.enqueue(key);
  }

  /** Keys waiting (not counting ones being processed or delayed). */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Keys waiting or being processed: zero once converged. */
  get pending(): number {
    return this.#queue.length + this.#queue.inFlight;
  }

  /** Reconciles until the signal aborts. */
  async run(signal: AbortSignal, opts: RunOptions): Promise<void> {
    const queue = new WorkQueue({ backoff: { baseMs: 500, maxMs: 120_000 }, signal });
    this.#queue = queue;
    this.resync();
    const resync = opts.resyncMs ? setInterval(() => this.resync(), opts.resyncMs) : undefined;
    resync?.unref();
    try {
      await runReconciler({
        queue,
        reconcile: (key, s) => this.#reconcile(parseRef(key), s),
        workers: opts.workers,
        signal,
        ...(opts.observe
          ? { observe: (key, outcome, ms, err) => opts.observe?.(parseRef(key), outcome, ms, err, queue.failures(key)) }
          : {}),
      });
    } finally {
      clearInterval(resync);
    }
  }
}

/**
 * Controllers whose keys share one FIFO queue and one pool of workers: events interleave their keys in
 * arrival order, and a key still waiting when it is woken again is reconciled once (status aggregates such as
 * a group's are written once per burst, not once per event). The controller's name and key form the queue's
 * string, inside this class only.
 */
export class ControllerGroup {
  readonly #controllers: Map<string, Controller>;
  #queue = new WorkQueue();

  constructor(controllers: Controller[]) {
    this.#controllers = new Map(controllers.map((c) => [c.name, c]));
    for (const c of controllers) c.joinGroup((key) => this.#queue.add(`${c.name}:${formatRef(key)}`));
  }

  #split(key: string): [Controller, ObjectRef] {
    const i = key.indexOf(':');
    return [this.#controllers.get(key.slice(0, i)) as Controller, parseRef(key.slice(i + 1))];
  }

  /** Queues every key of every controller now. */
  resync(): void {
    for (const c of this.#controllers.values()) c.resync();
  }

  /** Keys waiting (not counting ones being processed or delayed). */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Keys waiting or being processed: zero once converged. */
  get pending(): number {
    return this.#queue.length + this.#queue.inFlight;
  }

  /** Reconciles until the signal aborts; observe gets the controller's name. */
  async run(
    signal: AbortSignal,
    opts: Omit<RunOptions, 'observe'> & {
      observe?: (controller: string, ...rest: Parameters<NonNullable<RunOptions['observe']>>) => void;
    },
  ): Promise<void> {
    const queue = new WorkQueue({ backoff: { baseMs: 500, maxMs: 120_000 }, signal });
    this.#queue = queue;
    this.resync();
    const resync = opts.resyncMs ? setInterval(() => this.resync(), opts.resyncMs) : undefined;
    resync?.unref();
    try {
      await runReconciler({
        queue,
        reconcile: (key, s) => {
          const [c, ref] = this.#split(key);
          return c.reconcileKey(ref, s);
        },
        workers: opts.workers,
        signal,
        observe: (key, outcome, ms, err) => {
          const [c, ref] = this.#split(key);
          opts.observe?.(c.name, ref, outcome, ms, err, queue.failures(key));
        },
      });
    } finally {
      clearInterval(resync);
    }
  }
}
