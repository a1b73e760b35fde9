import type { LocalModelNode } from '../../api/types.ts';
import type { PeerOffer } from '../node-cache/plan.ts';
import { zoneOf } from '../../kube/node-facts.ts';
import type { Node } from '../../kube/types.ts';

/**
 * Which other nodes offer which model, from their LocalModelNode statuses (the API is the directory): a node
 * offers a model it reports Downloaded, or Downloading while it copies it from peers (in progress: it serves the
 * pieces verified so far), with a piece manifest, at the peer address it publishes. Pure.
 */
export function peerOffers(
  nodes: readonly LocalModelNode[],
  self: string,
  nodeOf: (name: string) => Node | undefined,
): Map<string, PeerOffer[]> {
  const out = new Map<string, PeerOffer[]>();
  for (const lmn of nodes) {
    const node = lmn.metadata.name;
    const address = lmn.status?.peer?.address;
    if (!node || node === self || !address) continue;
    for (const [name, detail] of Object.entries(lmn.status?.models ?? {})) {
      const key = detail.storageKey;
      const state = lmn.status?.modelStatus?.[name];
      if (!key || !detail.pieces || (state !== 'ModelDownloaded' && state !== 'ModelDownloading')) continue;
      const offer: PeerOffer = {
        node,
        address,
        pieces: detail.pieces,
        sameZone: zoneOf(nodeOf(node)) === zoneOf(nodeOf(self)),
      };
      if (state === 'ModelDownloading') {
        offer.inProgress = true;
        if (detail.bytesDone !== undefined) offer.bytesDone = detail.bytesDone;
      }
      out.set(key, [...(out.get(key) ?? []), offer]);
    }
  }
  return out;
}
