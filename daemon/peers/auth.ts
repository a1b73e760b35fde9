import { createHash } from 'node:crypto';

/** What the apiserver said of a token (kube/token-review.ts reviewToken, with the peer audience). */
export interface PeerReview {
  authenticated: boolean;
  username?: string;
}

export interface PeerAuthenticatorOptions {
  /** Asks who a token is; throws when it cannot tell (apiserver down). */
  review: (token: string, signal: AbortSignal) => Promise<PeerReview>;
  /** Usernames allowed to fetch, e.g. `system:serviceaccount:modelcache-system:modelcache-daemon`. */
  allowed: readonly string[];
  /** How long an admitted token is admitted again without a review (default 30 s). */
  cacheMs?: number;
  /** Most tokens remembered; the oldest is dropped first (default 1000). */
  maxEntries?: number;
  now?: () => number;
}

/** The verdict on one request: who it is, or the status to refuse it with (503: nobody could tell). */
export type PeerCheck =
  | { ok: true; username: string }
  /** `message` may be sent to the peer; `detail` (why a review failed) is for the log only. */
  | { ok: false; status: 401 | 403 | 503; message: string; detail?: string };

/** Longest bearer token looked at: service-account JWTs are a few KiB. */
const MAX_TOKEN_LENGTH = 16 * 1024;

/**
 * Decides whether a peer request's bearer token is one of the allowed identities, by TokenReview.
 * Admissions are remembered for `cacheMs` under the token's SHA-256 (the token itself is never kept), so a
 * burst of piece requests costs one review; refusals are never remembered, and a review that fails refuses.
 */
export class PeerAuthenticator {
  readonly #review: PeerAuthenticatorOptions['review'];
  readonly #allowed: ReadonlySet<string>;
  readonly #cacheMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  /** sha256(token) → username and until when; in insertion order, oldest first. */
  readonly #admitted = new Map<string, { username: string; until: number }>();

  constructor(o: PeerAuthenticatorOptions) {
    this.#review = o.review;
    this.#allowed = new Set(o.allowed);
    this.#cacheMs = o.cacheMs ?? 30_000;
    this.#maxEntries = Math.max(1, o.maxEntries ?? 1000);
    this.#now = o.now ?? Date.now;
  }

  /** The verdict on an `Authorization` header: no or a malformed bearer token, or not authenticated, is 401. */
  async check(authorization: string | undefined, signal: AbortSignal): Promise<PeerCheck> {
    const m = /^Bearer +([\x21-\x7e]+) *$/i.exec(authorization ?? '');
    const token = m?.[1];
    if (!token || token.length > MAX_TOKEN_LENGTH)
      return { ok: false, status: 401, message: 'a bearer token is required' };
    const key = createHash('sha256').update(token).digest('hex');
    const known = this.#admitted.get(key);
    if (known && known.until > this.#now()) return { ok: true, username: known.username };
    if (known) this.#admitted.delete(key);
    let review: PeerReview;
    try {
      review = await this.#review(token, signal);
    } catch (err) {
      const detail = String((err as Error)?.message ?? err);
      return { ok: false, status: 503, message: 'cannot review the token now: try again later', detail };
    }
    if (!review.authenticated || !review.username)
      return { ok: false, status: 401, message: 'the token is not valid for peer requests' };
    if (!this.#allowed.has(review.username))
      return { ok: false, status: 403, message: `${review.username} may not fetch from peers` };
    this.#remember(key, review.username);
    return { ok: true, username: review.username };
  }

  #remember(key: string, username: string): void {
    this.#admitted.delete(key);
    while (this.#admitted.size >= this.#maxEntries) {
      const oldest = this.#admitted.keys().next();
      if (oldest.done) break;
      this.#admitted.delete(oldest.value);
    }
    this.#admitted.set(key, { username, until: this.#now() + this.#cacheMs });
  }
}
