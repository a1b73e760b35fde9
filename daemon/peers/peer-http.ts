import { createHash } from 'node:crypto';
import type { Agent } from 'undici';
import { PROGRESS_HEADER } from './protocol.ts';

/** One answer of a peer: its whole body, or why not (`lied`: it sent more than was asked, never network trouble). */
export type PeerAnswer = { ok: true; bytes: Buffer; progress?: number } | PeerRefusal;

/** A piece as a peer sent it: the chunks it came in (never copied into one buffer), and their SHA-256. */
export type PieceAnswer = { ok: true; chunks: Buffer[]; length: number; sha256: string } | PeerRefusal;

/** Why a peer's answer is not used (`lied`: it sent more than was asked, never network trouble). */
export type PeerRefusal = { ok: false; lied: boolean; why: string; status?: number; retryAfterMs?: number };

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
  const r = await receive(agent, url, o, false);
  if (!r.ok) return r;
  const progress = Number(r.headers[PROGRESS_HEADER]);
  return {
    ok: true,
    bytes: r.into ?? Buffer.concat(r.chunks, r.length),
    ...(Number.isSafeInteger(progress) && progress >= 0 ? { progress } : {}),
  };
}

/** A piece from a peer as peerGet gets it, hashed (SHA-256) as its chunks arrive, which are kept as they came. */
export async function peerGetPiece(agent: Agent, url: URL, o: PeerGetOptions): Promise<PieceAnswer> {
  const r = await receive(agent, url, o, true);
  return r.ok ? { ok: true, chunks: r.chunks, length: r.length, sha256: r.sha256! } : r;
}

interface Received {
  ok: true;
  headers: Record<string, string | string[] | undefined>;
  /** The body in one buffer of its announced length (not hashed), or as `chunks`. */
  into?: Buffer;
  chunks: Buffer[];
  length: number;
  sha256?: string;
}

async function receive(agent: Agent, url: URL, o: PeerGetOptions, hashed: boolean): Promise<Received | PeerRefusal> {
  let res: Awaited<ReturnType<Agent['request']>>;
  try {
    res = await agent.request({
      origin: url.origin,
      path: url.pathname + url.search,
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
  // One buffer of the announced length (a piece: 16 MiB), filled as chunks arrive: no list of chunks to join and
  // collect afterwards. Without a usable Content-Length, chunks are joined at the end.
  const announced = Number(res.headers['content-length']);
  const whole = Number.isSafeInteger(announced) && announced >= 0 && announced <= o.maxBytes;
  const into = whole && !hashed ? Buffer.allocUnsafe(announced) : undefined;
  const hash = hashed ? createHash('sha256') : undefined;
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (n + chunk.length > (into ? into.length : whole ? announced : o.maxBytes)) {
        body.destroy();
        return { ok: false, lied: true, why: `sent more than the ${into?.length ?? o.maxBytes} bytes asked for` };
      }
      if (into) chunk.copy(into, n);
      else chunks.push(chunk);
      hash?.update(chunk);
      n += chunk.length;
    }
  } catch (err) {
    body.destroy();
    return { ok: false, lied: false, why: reason(err) };
  }
  if (whole && n !== announced) return { ok: false, lied: false, why: `body ended at byte ${n} of ${announced}` };
  return {
    ok: true,
    headers: res.headers,
    ...(into ? { into } : {}),
    chunks,
    length: n,
    ...(hash ? { sha256: hash.digest('hex') } : {}),
  };
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
