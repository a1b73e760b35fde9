import { createReadStream } from 'node:fs';
import { readdir, realpath, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join, relative, sep } from 'node:path';

import { readMarker } from '../disk/inventory.ts';
import { isValidKey, MARKER_FILE, modelPaths, modelsRoot } from '../disk/layout.ts';
import { shownUri } from './source-uri.ts';

/** A complete model in this node's cache, as /v1/models lists it. */
interface CachedModel {
  key: string;
  /** The source URI as it may be shown: no credentials, no query (see uriSha256 for the exact one). */
  uri: string;
  /** sha256 (hex) of the exact source URI: how a consumer matches a URI that carries credentials or a query. */
  uriSha256: string;
  bytes: number;
  files: number;
  completedAt: string;
  /** Absolute path of the model's directory on this node. */
  path: string;
}

/**
 * Serves complete cached models to co-located consumers (the model agent, the registration
 * controller): GET /v1/models, /v1/models/<key>, /v1/models/<key>/files, /v1/models/<key>/files/<path>
 * with Range, ETag and Content-Length. Incomplete models are 404; paths with '..', encoded or not,
 * and symlinks that leave the model directory are refused. `used` hears of each model asked for by its key
 * (its metadata or its files): the node's last use of it.
 */
export function artifactRoutes(
  root: string,
  o: { used?: (storageKey: string) => void } = {},
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://local');
    const raw = url.pathname.split('/').slice(1);
    if (raw[0] !== 'v1' || raw[1] !== 'models') return false;
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'only GET and HEAD' });
    let parts: string[];
    try {
      parts = raw.slice(2).map((p) => decodeURIComponent(p));
    } catch {
      return send(res, 400, { error: 'bad percent-encoding in path' });
    }
    if (parts.length === 0 || (parts.length === 1 && parts[0] === '')) return send(res, 200, await listModels(root));
    const key = parts[0] ?? '';
    if (!isValidKey(key)) return send(res, 400, { error: `invalid model key '${key}'` });
    const model = await readModel(root, key);
    if (!model) return send(res, 404, { error: `model ${key} is not complete on this node` });
    o.used?.(key);
    if (parts.length === 1) return send(res, 200, model);
    if (parts[1] !== 'files') return send(res, 404, { error: 'not found' });
    if (parts.length === 2 || (parts.length === 3 && parts[2] === ''))
      return send(res, 200, await listFiles(model.path));
    const rel = parts.slice(2);
    if (
      rel.some((p) => p === '' || p === '.' || p === '..' || p.includes('/') || p.includes('\\') || p.includes('\0')) ||
      rel.join('/') === MARKER_FILE
    ) {
      return send(res, 403, { error: 'path not allowed' });
    }
    return serveFile(req, res, model.path, rel);
  };
}

async function readModel(root: string, key: string): Promise<CachedModel | undefined> {
  const m = await readMarker(root, key);
  return (
    m && {
      key,
      uri: shownUri(m.uri),
      uriSha256: m.uriSha256,
      bytes: m.bytes,
      files: m.files,
      completedAt: m.completedAt,
      path: modelPaths(root, key).final,
    }
  );
}

/** Complete models under the root's `models/` (those with a marker). */
async function listModels(root: string): Promise<CachedModel[]> {
  const entries = await readdir(modelsRoot(root), { withFileTypes: true }).catch(() => []);
  const out: CachedModel[] = [];
  for (const e of entries) {
    if (!e.isDirectory() || !isValidKey(e.name)) continue;
    const m = await readModel(root, e.name);
    if (m) out.push(m);
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : 1));
}

async function listFiles(dir: string): Promise<Array<{ path: string; size: number }>> {
  const out: Array<{ path: string; size: number }> = [];
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  for (const e of entries) {
    if (!e.isFile()) continue;
    const full = join(e.parentPath, e.name);
    const rel = relative(dir, full).split(sep).join('/');
    if (rel === MARKER_FILE) continue;
    out.push({ path: rel, size: (await stat(full)).size });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}

async function serveFile(req: IncomingMessage, res: ServerResponse, modelDir: string, rel: string[]): Promise<boolean> {
  let real: string;
  try {
    real = await realpath(join(modelDir, ...rel));
  } catch {
    return send(res, 404, { error: 'no such file' });
  }
  const base = await realpath(modelDir);
  if (!real.startsWith(base + sep)) return send(res, 403, { error: 'path leaves the model directory' });
  const st = await stat(real);
  if (!st.isFile()) return send(res, 404, { error: 'not a file' });
  const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
  const headers: Record<string, string> = {
    etag,
    'accept-ranges': 'bytes',
    'content-type': 'application/octet-stream',
    'last-modified': st.mtime.toUTCString(),
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  const ifRange = req.headers['if-range'];
  const range = parseRange(req.headers.range, st.size, Array.isArray(ifRange) ? ifRange[0] : ifRange, etag);
  if (range === 'unsatisfiable') {
    res.writeHead(416, { ...headers, 'content-range': `bytes */${st.size}` });
    res.end();
    return true;
  }
  const [start, end] = range ?? [0, st.size - 1];
  const length = st.size === 0 ? 0 : end - start + 1;
  res.writeHead(range ? 206 : 200, {
    ...headers,
    'content-length': String(length),
    ...(range ? { 'content-range': `bytes ${start}-${end}/${st.size}` } : {}),
  });
  if (req.method === 'HEAD' || length === 0) {
    res.end();
    return true;
  }
  await new Promise<void>((resolve) => {
    const stream = createReadStream(real, { start, end });
    stream.on('error', () => res.destroy());
    res.on('close', () => {
      stream.destroy();
      resolve();
    });
    stream.pipe(res);
  });
  return true;
}

/** One byte range of `Range: bytes=…` (several ranges, or a stale If-Range, get the whole file). */
function parseRange(
  header: string | undefined,
  size: number,
  ifRange: string | undefined,
  etag: string,
): [number, number] | 'unsatisfiable' | undefined {
  if (!header || (ifRange !== undefined && ifRange !== etag)) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  const [, a, b] = m;
  let start: number;
  let end: number;
  if (a === '') {
    if (b === '') return undefined;
    start = Math.max(0, size - Number(b));
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size || start > end) return 'unsatisfiable';
  return [start, end];
}

function send(res: ServerResponse, status: number, body: unknown): true {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
  return true;
}
