import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DownloadError } from '../../download/errors.ts';
import { asDownloadError, FAILURE_POLICY, retryPlan } from '../../download/failure-policy.ts';

const delays = { soonMs: [1000, 1000], laterMs: [60_000, 60_000], random: () => 1 } as const;

test('failure policy: spec faults wait for the spec, network and disk trouble soon, content faults later', () => {
  assert.deepEqual(retryPlan('InvalidUri', 1, delays, 0), { retryAt: undefined, discard: true });
  assert.deepEqual(retryPlan('UnsupportedScheme', 3, delays, 0), { retryAt: undefined, discard: true });
  assert.deepEqual(retryPlan('SourceUnavailable', 1, delays, 0), { retryAt: 1000, discard: false });
  assert.deepEqual(retryPlan('InsufficientCapacity', 1, delays, 0), { retryAt: 1000, discard: false });
  assert.deepEqual(retryPlan('DiskError', 1, delays, 0), { retryAt: 1000, discard: false });
  for (const code of ['BadResponse', 'UnsafeArchive', 'UnsafeObjectName', 'SizeExceeded', 'IntegrityMismatch'] as const)
    assert.deepEqual(retryPlan(code, 1, delays, 5), { retryAt: 60_005, discard: true }, code);
  for (const code of ['AccessDenied', 'SourceNotFound', 'SourceEmpty', 'Internal'] as const)
    assert.deepEqual(retryPlan(code, 1, delays, 0), { retryAt: 60_000, discard: false }, code);
  assert.equal(FAILURE_POLICY.SourceUnavailable.retryWithinAttempt, true);
});

test('a failure that is not a DownloadError is a bug (Internal), except disk errors, mapped by their errno', () => {
  const bug = asDownloadError(new TypeError('x is undefined'), 'extracting');
  assert.equal(bug.code, 'Internal');
  assert.match(bug.message, /bug in modelcache.*x is undefined/);
  const full = Object.assign(new Error('no space'), { code: 'ENOSPC' });
  assert.equal(asDownloadError(full, 'writing').code, 'InsufficientCapacity');
  const io = Object.assign(new Error('io'), { code: 'EIO' });
  assert.equal(asDownloadError(io, 'writing').code, 'DiskError');
  const coded = new DownloadError('UnsafeArchive', 'no');
  assert.equal(asDownloadError(coded, 'x'), coded);
});
