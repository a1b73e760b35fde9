// The apiserver side of these rules (real TokenReviews, RBAC, audiences) is in test/integration/peer-server.test.ts;
// here the reviewer is a table of known tokens that can be switched off, to script time and the cache's bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PeerAuthenticator, type PeerReview } from '../../daemon/peers/auth.ts';

const DAEMON = 'system:serviceaccount:modelcache-system:modelcache-daemon';
const signal = new AbortController().signal;

/** The HTTP status a request with `header` would get (200 when admitted). */
async function statusOf(auth: PeerAuthenticator, header: string | undefined): Promise<number> {
  const v = await auth.check(header, signal);
  return v.ok ? 200 : v.status;
}

/** A reviewer that knows `users` (token → username) and fails like an unreachable apiserver when `down`. */
function directory(users: Record<string, string>): {
  review: (token: string) => Promise<PeerReview>;
  down: boolean;
} {
  const d = {
    down: false,
    review: async (token: string): Promise<PeerReview> => {
      if (d.down) throw new Error('connect ECONNREFUSED');
      const username = users[token];
      return username ? { authenticated: true, username } : { authenticated: false };
    },
  };
  return d;
}

test('peer auth: bearer tokens only; unknown is 401, not allowed is 403, a failed review is 503', async () => {
  const dir = directory({ good: DAEMON, other: 'system:serviceaccount:x:someone' });
  const auth = new PeerAuthenticator({ review: dir.review, allowed: [DAEMON] });
  assert.deepEqual(await auth.check('Bearer good', signal), { ok: true, username: DAEMON });
  assert.deepEqual(await auth.check('bearer   good', signal), { ok: true, username: DAEMON }, 'scheme is any case');
  const malformed = [
    undefined,
    '',
    'Bearer',
    'Bearer ',
    'Basic Z29vZA==',
    'good',
    'Bearer a b',
    `Bearer ${'x'.repeat(20_000)}`,
  ];
  for (const header of malformed) assert.equal(await statusOf(auth, header), 401, String(header).slice(0, 30));
  assert.equal(await statusOf(auth, 'Bearer nobody'), 401);
  assert.equal(await statusOf(auth, 'Bearer other'), 403);
  dir.down = true;
  const down = await auth.check('Bearer other', signal);
  assert.equal(down.ok ? 200 : down.status, 503, 'a refusal is not remembered: reviewed again, and that fails');
  assert.ok(!down.ok && !down.message.includes('ECONNREFUSED') && down.detail?.includes('ECONNREFUSED'));
});

test('peer auth: admissions are remembered for cacheMs, at most maxEntries, oldest dropped first', async () => {
  const dir = directory({ a: DAEMON, b: DAEMON, c: DAEMON });
  let now = 1_000_000;
  const auth = new PeerAuthenticator({
    review: dir.review,
    allowed: [DAEMON],
    cacheMs: 30_000,
    maxEntries: 2,
    now: () => now,
  });
  const status = (token: string): Promise<number> => statusOf(auth, `Bearer ${token}`);
  assert.equal(await status('a'), 200);
  assert.equal(await status('b'), 200);
  dir.down = true;
  now += 29_999;
  assert.deepEqual([await status('a'), await status('b')], [200, 200], 'within cacheMs: no review needed');
  now += 2;
  assert.deepEqual([await status('a'), await status('b')], [503, 503], 'after cacheMs: reviewed again');

  dir.down = false;
  for (const t of ['a', 'b', 'c']) assert.equal(await status(t), 200);
  dir.down = true;
  assert.deepEqual(
    [await status('a'), await status('b'), await status('c')],
    [503, 200, 200],
    "'a' was dropped for 'c'",
  );
});
