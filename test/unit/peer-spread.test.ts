// Which copiers of a live copy take each new piece from the seed itself (daemon/peers/spread.ts): pure ranks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FIRST_RECEIVERS, firstReceiverOf, ReceiverGate } from '../../daemon/peers/spread.ts';

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

test('receiver gate: no wait for a first piece; the others from when their hash was learnt, or the copy began', () => {
  const copiers = ['b', 'c', 'd', 'e'];
  const firsts = firstReceiverOf('a', copiers, 40);
  const first = firsts.indexOf(1);
  const other = firsts.indexOf(0);
  assert.ok(first >= 0 && other >= 0);
  const gate = new ReceiverGate('a', 40, 1000, 500);
  assert.equal(
    gate.until(first, () => copiers),
    0,
    'a first receiver asks the seed at once',
  );
  assert.equal(
    gate.until(other, () => copiers),
    1500,
    'known since the copy began',
  );
  gate.learnt(other, 4000);
  assert.equal(
    gate.until(other, () => copiers),
    4500,
    'learnt later: counted from then',
  );
  // The other copiers leave: this node is first for every piece once the ranks are computed again.
  assert.equal(
    gate.until(other, () => []),
    4500,
    'ranks kept until the copiers are said to have changed',
  );
  gate.copiersChanged();
  assert.equal(
    gate.until(other, () => []),
    0,
  );
});
