// Which copiers of a live copy take each new piece from the seed itself (daemon/peers/spread.ts): pure ranks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FIRST_RECEIVERS, firstReceiverOf } from '../../daemon/peers/spread.ts';

test('first receivers: every piece has exactly FIRST_RECEIVERS of the copiers, each copier about its share', () => {
  const nodes = Array.from({ length: 8 }, (_, i) => `gpu-node-${i}`);
  const count = 4000;
  const perNode = nodes.map((self) => firstReceiverOf(self, nodes, count));
  for (let i = 0; i < count; i++)
    assert.equal(
      perNode.reduce((n, firsts) => n + firsts[i]!, 0),
      FIRST_RECEIVERS,
      `piece ${i}: as many first receivers as set, whichever node computes it`,
    );
  const share = (count * FIRST_RECEIVERS) / nodes.length;
  for (const [k, firsts] of perNode.entries()) {
    const mine = firsts.reduce((n, b) => n + b, 0);
    assert.ok(mine > 0.8 * share && mine < 1.2 * share, `${nodes[k]}: ${mine} pieces, about ${share}`);
  }
});

test('first receivers: a copier alone, or among no more copiers than receivers, takes every piece itself', () => {
  assert.ok(firstReceiverOf('a', [], 50).every((b) => b === 1));
  assert.ok(
    firstReceiverOf('a', ['a', 'b'], 50).every((b) => b === 1),
    'two copiers, two receivers',
  );
  const three = firstReceiverOf('a', ['b', 'c'], 300).reduce((n, b) => n + b, 0);
  assert.ok(three > 150 && three < 250, `of three copiers, about two thirds: ${three}`);
  assert.deepEqual(firstReceiverOf('a', ['b', 'c', 'b'], 300), firstReceiverOf('a', ['c', 'b'], 300), 'a set');
});
