import { DownloadError, redactUrl } from '../download/errors.ts';

/**
 * A source URI as it may appear in logs, statuses, markers and /v1/models: no user, password or
 * query (signed URLs carry their secrets there), even when the URI does not parse.
 */
export function shownUri(uri: string): string {
  const redacted = redactUrl(uri);
  if (redacted !== '(invalid URL)') return redacted;
  return uri.replace(/^([^:/?#]*:\/\/)[^/?#]*@/, '$1').replace(/[?#].*$/s, '');
}

/** `text` with every secret part of `uri` (the URI itself, its password, its query) replaced. */
export function scrubUri(text: string, uri: string): string {
  let out = text.split(uri).join(shownUri(uri));
  try {
    const u = new URL(uri);
    for (const secret of [u.password, u.search.slice(1)]) if (secret.length >= 3) out = out.split(secret).join('***');
  } catch {
    // not a URL: the whole-URI replacement above is all there is
  }
  return out;
}

/**
 * Checks a model's sourceModelUri before anything uses it, so a spec the CRD let through ends as
 * this model's InvalidUri status and never as an exception elsewhere. Returns the scheme (no colon).
 */
export function checkSourceUri(uri: string): string {
  let u: URL;
  try {
    u = new URL(uri);
  } catch (err) {
    throw new DownloadError(
      'InvalidUri',
      `sourceModelUri '${shownUri(uri)}' is not a valid URI (${(err as Error).message}): fix spec.sourceModelUri ` +
        'of the LocalModelCache (a port is 1-65535, a host has no spaces), e.g. https://host/models/m.tar.gz or s3://bucket/models/m',
      { cause: err },
    );
  }
  return u.protocol.replace(':', '');
}
