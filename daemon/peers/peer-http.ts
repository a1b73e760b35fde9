import type { Agent } from 'undici';

/** One answer of a peer: its whole body, or why not (`lied`: it sent more than was asked, never network trouble). */
export type PeerAnswer =
  { ok: true; bytes: Buffer } | { ok: false; lied: boolean; why: string; status?: number; retryAfterMs?: number };

export interface PeerGetOptions {
  token: string;
  signal: AbortSignal;
  /** Longest wait for the headers, and between two chunks of the body: a stall. */
  timeoutMs: number;
  /** Most body bytes accepted: the rest is never read. */
  maxBytes: number;
}

/**
 * GET `url` from a peer with its bearer token, the body buffered whole (at most `maxBytes`). No redirect is
 * followed: a peer answers for itself. Never throws: every failure is an answer the caller weighs.
 */
export async function peerGet(agent: Agent, url: URL, o: PeerGetOptions): Promise<PeerAnswer> {
  let res: Awaited<ReturnType<Agent['request']>>;
  try {
    res = await agent.request({
      origin: url.origin,
      path: url.pathname,
      method: 'GET',
      headers: { authorization: `Bearer ${o.token}`, accept: 'application/octet-stream, application/json' },
      signal: o.signal,
      headersTimeout: o.timeoutMs,
      bodyTimeout: o.timeoutMs,
    });
  } catch (err) {
    return { ok: false, lied: false, why: reason(err) };
  }
  const body = res.body;
  body.on('error', () => undefined); // a late error of a body dropped below is of no interest
  if (res.statusCode !== 200) {
    body.destroy();
    const after = retryAfterMs(res.headers['retry-after']);
    return {
      ok: false,
      lied: false,
      status: res.statusCode,
      why: `HTTP ${res.statusCode}`,
      ...(after !== undefined ? { retryAfterMs: after } : {}),
    };
  }
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      n += chunk.length;
      if (n > o.maxBytes) {
        body.destroy();
        return { ok: false, lied: true, why: `sent more than the ${o.maxBytes} bytes asked for` };
      }
      chunks.push(chunk);
    }
  } catch (err) {
    body.destroy();
    return { ok: false, lied: false, why: reason(err) };
  }
  return { ok: true, bytes: Buffer.concat(chunks, n) };
}

function reason(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e?.code ? `${e.code}: ${e.message ?? ''}` : String(e?.message ?? err);
}

function retryAfterMs(h: string | string[] | undefined): number | undefined {
  const v = Array.isArray(h) ? h[0] : h;
  if (!v) return undefined;
  const secs = Number(v);
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(v) - Date.now();
  return Number.isFinite(ms) ? Math.max(0, ms) : undefined;
}
