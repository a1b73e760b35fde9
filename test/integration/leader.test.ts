import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LeaderElector } from '../../kube/leader.ts';
import { LEASES } from '../../kube/resources.ts';
import type { Lease } from '../../kube/types.ts';
import { eventually } from '../../localcluster/eventually.ts';
import { useControlPlane, uniqueName } from '../helpers/cluster.ts';

const cluster = useControlPlane({ controllerManager: false });

test('two candidates: exactly one leads; when it stops, the other takes over at once', async () => {
  const lease = uniqueName('lease');
  const leading = new Set<string>();
  let bothAtOnce = false;
  const run = (id: string, ac: AbortController): Promise<void> => {
    const el = new LeaderElector({
      client: cluster.client,
      namespace: 'default',
      name: lease,
      identity: id,
      retryPeriodMs: 200,
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
    });
    return el.run(async (signal) => {
      leading.add(id);
      if (leading.size > 1) bothAtOnce = true;
      await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
      leading.delete(id);
    }, ac.signal);
  };
  const a = new AbortController();
  const b = new AbortController();
  const runA = run('a', a);
  const runB = run('b', b);
  await eventually(() => assert.equal(leading.size, 1));
  // Several renew periods pass; the standby must not take over a lease that is being renewed.
  const first = [...leading][0] as string;
  await eventually(async () => {
    const l = await cluster.client.get<Lease>(LEASES, lease, { namespace: 'default' });
    assert.ok(l && Date.parse(l.spec.renewTime ?? '') - Date.parse(l.spec.acquireTime ?? '') > 1000);
  });
  assert.deepEqual([...leading], [first]);
  const [stopFirst, other] = first === 'a' ? [a, 'b'] : [b, 'a'];
  stopFirst.abort();
  await (first === 'a' ? runA : runB);
  const released = await cluster.client.get<Lease>(LEASES, lease, { namespace: 'default' });
  assert.ok(
    released?.spec.holderIdentity === undefined ||
      released.spec.holderIdentity === null ||
      released.spec.holderIdentity === other,
    'lease released on shutdown',
  );
  await eventually(() => assert.deepEqual([...leading], [other]), { timeoutMs: 2500 });
  assert.equal(bothAtOnce, false);
  (first === 'a' ? b : a).abort();
  await Promise.all([runA, runB]);
});
