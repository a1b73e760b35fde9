import { test } from 'node:test';
import assert from 'node:assert/strict';
import { progressText, totalProgress } from '../../api/progress.ts';

test('progress text: whole percents rounded down, 100% only when done, nothing to do is no figure', () => {
  assert.equal(progressText(0, 1000), '0%');
  assert.equal(progressText(1, 1000), '0%');
  assert.equal(progressText(999, 1000), '99%');
  assert.equal(progressText(9995, 10000), '99%');
  assert.equal(progressText(1000, 1000), '100%');
  assert.equal(progressText(1200, 1000), '100%', 'more than announced is still done, never 120%');
  assert.equal(progressText(0, 0), '0%');
  assert.equal(totalProgress([]), undefined);
  assert.equal(
    totalProgress([
      { done: 10, total: 10 },
      { done: 0, total: 30 },
    ]),
    '25%',
  );
});
