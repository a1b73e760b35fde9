import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseQuantity } from '../../api/quantity.ts';
import { MAX_TIMER_MS, durationFlag, quantityFlag, wholeNumberFlag } from '../../ops/flags.ts';

test('wholeNumberFlag: whole numbers in range pass; the error names the flag, the range and the value', () => {
  assert.equal(wholeNumberFlag('workers', '4'), 4);
  assert.equal(wholeNumberFlag('grace', '0', 0), 0);
  assert.equal(wholeNumberFlag('poll-ms', '3600000', 50, 3_600_000), 3_600_000);
  for (const bad of ['0', '-1', '1.5', 'abc', '', ' ', '0x10', '1e3', 'Infinity', '99999999999999999999'])
    assert.throws(() => wholeNumberFlag('workers', bad), /--workers must be a whole number ≥ 1 \(got '/, bad);
  assert.throws(
    () => wholeNumberFlag('workers', undefined),
    /--workers must be a whole number ≥ 1 \(got 'undefined'\)/,
  );
  assert.throws(
    () => wholeNumberFlag('poll-ms', '1000000000000', 50, 3_600_000),
    /^Error: --poll-ms must be a whole number from 50 to 3600000 \(got '1000000000000'\)$/,
  );
  assert.throws(() => wholeNumberFlag('poll-ms', '49', 50, 3_600_000), /from 50 to 3600000 \(got '49'\)/);
});

test('durationFlag: returns milliseconds and refuses waits a timer cannot keep (above 2^31-1 ms it fires after 1 ms)', () => {
  assert.equal(durationFlag('stall-timeout-seconds', '30', 's'), 30_000);
  assert.equal(durationFlag('progress-interval-ms', '2000', 'ms'), 2000);
  assert.equal(durationFlag('progress-interval-ms', String(MAX_TIMER_MS), 'ms'), MAX_TIMER_MS);
  assert.equal(durationFlag('grace', '0', 's', { min: 0 }), 0);
  assert.ok(durationFlag('stall-timeout-seconds', '2147483', 's') <= MAX_TIMER_MS);
  assert.throws(
    () => durationFlag('stall-timeout-seconds', '3000000', 's'),
    /^Error: --stall-timeout-seconds must be a whole number of seconds from 1 to 2147483 \(got '3000000'\)$/,
  );
  assert.throws(
    () => durationFlag('progress-interval-ms', String(MAX_TIMER_MS + 1), 'ms'),
    /--progress-interval-ms must be a whole number of milliseconds from 1 to 2147483647/,
  );
  assert.throws(
    () => durationFlag('poll-ms', '10', 'ms', { min: 50, max: 3_600_000 }),
    /from 50 to 3600000 \(got '10'\)/,
  );
  for (const bad of ['-5', '1.5', 'x', ''])
    assert.throws(() => durationFlag('stall-timeout-seconds', bad, 's'), /--stall-timeout-seconds must be/, bad);
});

test('quantityFlag: Kubernetes quantities as bytes; negatives, garbage, overflow and out-of-range values are refused', () => {
  assert.equal(quantityFlag('safety-margin', '1Gi'), 2 ** 30);
  assert.equal(quantityFlag('safety-margin', '0'), 0);
  assert.equal(quantityFlag('part-size', '16Mi', { min: 1 }), 16 * 2 ** 20);
  assert.equal(quantityFlag('part-size', '500M', { min: 1, max: 5 * 2 ** 30 }), 5e8);
  for (const bad of ['-1Gi', '-1', '10GB', 'lots', '', '1e99', '1e999', '8Ei'])
    assert.throws(
      () => quantityFlag('safety-margin', bad),
      (err: Error) =>
        err.message.startsWith(`--safety-margin must be a quantity ≥ 0 bytes`) &&
        err.message.endsWith(`(got '${bad}')`),
      bad,
    );
  assert.throws(
    () => quantityFlag('part-size', '0', { min: 1, max: 5 * 2 ** 30 }),
    /^Error: --part-size must be a quantity from 1 to 5Gi bytes, e\.g\. 10Gi, 500Mi or 2G \(got '0'\)$/,
  );
  assert.throws(() => quantityFlag('part-size', '6Gi', { min: 1, max: 5 * 2 ** 30 }), /\(got '6Gi'\)/);
  assert.throws(() => quantityFlag('part-size', undefined, { min: 1 }), /--part-size must be a quantity ≥ 1 bytes/);
});

test('parseQuantity: a quantity too large for a number is an error, not Infinity', () => {
  assert.throws(() => parseQuantity('1e999', 'spec.modelSize'), /spec\.modelSize: '1e999' is too large to be a size/);
  assert.equal(Object.is(parseQuantity('-0'), 0), true);
});
