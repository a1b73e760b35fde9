import type { KubeClient } from './client.ts';

/** What the apiserver says of a bearer token presented to us. */
export interface TokenReviewResult {
  authenticated: boolean;
  /** Who the token is (e.g. `system:serviceaccount:<ns>:<name>`), when authenticated. */
  username?: string;
  /** Why it is not authenticated, as the apiserver (or the audience check here) puts it. */
  error?: string;
}

interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string };
  audiences?: string[];
  error?: string;
}

/**
 * Asks the apiserver who `token` is (TokenReview), for one of `audiences`. A token the apiserver accepts but
 * not for one of those audiences is not authenticated: the answer's audiences are checked as the API asks
 * (an authenticator that ignores audiences answers with none). Throws when the apiserver cannot answer.
 */
export async function reviewToken(
  client: KubeClient,
  token: string,
  audiences: string[],
  signal?: AbortSignal,
): Promise<TokenReviewResult> {
  const review = await client.request<{ status?: TokenReviewStatus }>(
    'POST',
    '/apis/authentication.k8s.io/v1/tokenreviews',
    {
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } },
      signal,
    },
  );
  const s = review.status ?? {};
  if (s.authenticated !== true) return { authenticated: false, error: s.error || 'token not authenticated' };
  if (audiences.length > 0 && !(s.audiences ?? []).some((a) => audiences.includes(a)))
    return { authenticated: false, error: `token is not for audience ${audiences.join(', ')}` };
  const username = s.user?.username;
  if (!username) return { authenticated: false, error: 'the review names no user' };
  return { authenticated: true, username };
}

/**
 * A token for a service account (TokenRequest), bound to `audiences` and valid `expirationSeconds` (the
 * apiserver's minimum is 600): what a projected service-account token volume holds. Tests and the demo use it.
 */
export async function requestToken(
  client: KubeClient,
  namespace: string,
  serviceAccount: string,
  audiences: string[],
  expirationSeconds: number,
  signal?: AbortSignal,
): Promise<string> {
  const sa = `${encodeURIComponent(namespace)}/serviceaccounts/${encodeURIComponent(serviceAccount)}`;
  const path = `/api/v1/namespaces/${sa}/token`;
  const res = await client.request<{ status?: { token?: string } }>('POST', path, {
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { audiences, expirationSeconds } },
    signal,
  });
  const token = res.status?.token;
  if (!token) throw new Error(`TokenRequest for ${namespace}/${serviceAccount} returned no token`);
  return token;
}
