import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkQueue } from '../../kube/workqueue.ts';
import { runReconciler, TerminalError } from '../../kube/reconciler.ts';
import { backoffDelay } from '../../ops/backoff.ts';
import { eventually } from '../../localcluster/eventually.ts';

test('a key added many times while waiting is handed out once', async () => {
  const q = new WorkQueue();
  q.add('a');
  q.add('b');
  q.add('a');
  assert.equal(q.length, 2);
  assert.equal(await q.get(), 'a');
  assert.equal(await q.get(), 'b');
  q.done('a');
  q.done('b');
  assert.equal(q.length, 0);
});

test('a key re-added while processing is parked, never given to a second worker, then queued once', async () => {
  const q = new WorkQueue();
  q.add('a');
  const k = await q.get();
  assert.equal(k, 'a');
  q.add('a');
  q.add('a');
  assert.equal(q.length, 0, 'not queued while processing');
  let second: string | undefined = 'none';
  const pending = q.get().then((v) => (second = v));
  await new Promise((r) => setImmediate(r));
  assert.equal(second, 'none', 'no worker receives a key that is being processed');
  q.done('a');
  await pending;
  assert.equal(second, 'a');
  q.done('a');
  assert.equal(q.length, 0);
});

test('backoff grows per key and is capped; forget resets it', () => {
  const opts = { baseMs: 100, maxMs: 1000, random: () => 1 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, opts)),
    [100, 200, 400, 800, 1000, 1000],
  );
  assert.equal(backoffDelay(3, { ...opts, random: () => 0 }), 200, 'jitter stays within [d/2, d]');
  const q = new WorkQueue({ backoff: opts });
  assert.equal(q.addRateLimited('x'), 100);
  assert.equal(q.addRateLimited('x'), 200);
  assert.equal(q.addRateLimited('y'), 100, 'backoff is per key');
  q.forget('x');
  assert.equal(q.addRateLimited('x'), 100);
  q.shutDown();
});

test('addAfter delivers the key later; the earlier of two delays wins', async () => {
  const q = new WorkQueue();
  q.addAfter('k', 10_000);
  q.addAfter('k', 20);
  const t0 = Date.now();
  assert.equal(await q.get(), 'k');
  assert.ok(Date.now() - t0 < 5_000);
  q.done('k');
  q.shutDown();
});

test('shutDown releases waiting workers and refuses new keys', async () => {
  const ac = new AbortController();
  const q = new WorkQueue({ signal: ac.signal });
  const waiting = q.get();
  ac.abort();
  assert.equal(await waiting, undefined);
  q.add('z');
  assert.equal(await q.get(), undefined);
});

test('runner: retries errors with backoff, stops on TerminalError, honours requeueAfter, one key at a time', async () => {
  const ac = new AbortController();
  const q = new WorkQueue({ backoff: { baseMs: 5, maxMs: 20 }, signal: ac.signal });
  const calls = new Map<string, number>();
  let concurrent = 0;
  let maxConcurrentSameKey = 0;
  const running = new Set<string>();
  const done = runReconciler({
    queue: q,
    workers: 4,
    signal: ac.signal,
    reconcile: async (key) => {
      if (running.has(key)) maxConcurrentSameKey = 2;
      running.add(key);
      concurrent++;
      await new Promise((r) => setTimeout(r, 2));
      q.add(key === 'flaky' ? 'flaky' : 'noop-readd'); // re-adding while running must not run it twice at once
      running.delete(key);
      concurrent--;
      const n = (calls.get(key) ?? 0) + 1;
      calls.set(key, n);
      if (key === 'flaky' && n < 3) throw new Error('transient');
      if (key === 'bad') throw new TerminalError('BadSpec', 'cannot fix');
      if (key === 'timed' && n < 2) return { requeueAfterMs: 10 };
    },
  });
  for (const k of ['flaky', 'bad', 'timed']) q.add(k);
  await eventually(() => {
    assert.ok((calls.get('flaky') ?? 0) >= 3);
    assert.equal(calls.get('timed'), 2);
    assert.equal(calls.get('bad'), 1);
  });
  ac.abort();
  await done;
  assert.equal(maxConcurrentSameKey, 0);
  assert.equal(concurrent, 0);
});
