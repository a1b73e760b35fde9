import type { LocalModelNode } from '../../api/types.ts';
import type { PeerOffer } from '../node-cache/plan.ts';

/**
 * Which other nodes offer which model, from their LocalModelNode statuses (the API is the directory): a node
 * offers a model it reports Downloaded with a piece manifest, at the peer address it publishes. Pure.
 */
export function peerOffers(nodes: readonly LocalModelNode[], self: string): Map<string, PeerOffer[]> {
  const out = new Map<string, PeerOffer[]>();
  for (const lmn of nodes) {
    const node = lmn.metadata.name;
    const address = lmn.status?.peer?.address;
    if (!node || node === self || !address) continue;
    for (const [name, detail] of Object.entries(lmn.status?.models ?? {})) {
      const key = detail.storageKey;
      if (!key || !detail.pieces || lmn.status?.modelStatus?.[name] !== 'ModelDownloaded') continue;
      out.set(key, [...(out.get(key) ?? []), { node, address, pieces: detail.pieces }]);
    }
  }
  return out;
}
