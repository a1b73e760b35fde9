// A CA and a serving certificate for the admission webhooks, made with node:crypto alone: keys and ECDSA
// signatures come from node:crypto; only the certificate's DER structure (RFC 5280) is written here.
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

export interface Issued {
  /** PEM of the certificate. */
  cert: string;
  /** PEM (PKCS #8) of its private key. */
  key: string;
}

export interface WebhookPki {
  /** PEM of the CA certificate; its key is thrown away once the serving certificate is signed. */
  ca: string;
  serving: Issued;
}

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyId: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyId: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
};

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
}

const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const explicit = (n: number, body: Buffer): Buffer => tlv(0xa0 | n, body);
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));

/** A non-negative INTEGER from big-endian bytes (minimal, with a leading zero when the top bit is set). */
function uint(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const b = bytes.subarray(i);
  return tlv(0x02, (b[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
}

function oid(dotted: string): Buffer {
  const [a = 0, b = 0, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (const arc of rest) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5), to the second, in UTC. */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}

/** Bits numbered from the most significant bit of the first byte (DER BIT STRING, trailing zeros dropped). */
function bits(...set: number[]): Buffer {
  const top = Math.max(...set);
  const bytes = Buffer.alloc(Math.floor(top / 8) + 1);
  for (const n of set) bytes[Math.floor(n / 8)]! |= 0x80 >> (n % 8);
  return tlv(0x03, Buffer.concat([Buffer.from([7 - (top % 8)]), bytes]));
}

function name(cn: string): Buffer {
  return seq(set(seq(oid(OID.organization), utf8('modelcache'))), set(seq(oid(OID.commonName), utf8(cn))));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}

/** SAN entries: dNSName [2] or iPAddress [7] (IPv4 or IPv6 bytes). */
function altNames(names: readonly string[]): Buffer {
  return seq(
    ...names.map((n) => {
      const family = isIP(n);
      if (family === 4) return tlv(0x87, Buffer.from(n.split('.').map(Number)));
      if (family === 6) return tlv(0x87, ipv6Bytes(n));
      return tlv(0x82, Buffer.from(n, 'ascii'));
    }),
  );
}

function ipv6Bytes(ip: string): Buffer {
  const [head = '', tail] = ip.split('::');
  const part = (s: string | undefined): number[] => (s ? s.split(':').map((h) => parseInt(h, 16)) : []);
  const h = part(head);
  const t = part(tail);
  const words = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

function keyId(publicKey: KeyObject): Buffer {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest()
    .subarray(0, 20);
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

interface CertRequest {
  subject: string;
  publicKey: KeyObject;
  issuer: { subject: string; key: KeyObject; publicKey: KeyObject };
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  sans?: readonly string[];
}

function certificate(r: CertRequest): string {
  const alg = seq(oid(OID.ecdsaWithSha256));
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const extensions = [
    extension(OID.basicConstraints, true, r.ca ? seq(bool(true), uint(Buffer.from([0]))) : seq()),
    // CA: keyCertSign (5), cRLSign (6); serving: digitalSignature (0).
    extension(OID.keyUsage, true, r.ca ? bits(0, 5, 6) : bits(0)),
    extension(OID.subjectKeyId, false, octets(keyId(r.publicKey))),
  ];
  if (!r.ca) {
    extensions.push(extension(OID.authorityKeyId, false, seq(tlv(0x80, keyId(r.issuer.publicKey)))));
    extensions.push(extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth))));
    extensions.push(extension(OID.subjectAltName, false, altNames(r.sans ?? [])));
  }
  const tbs = seq(
    explicit(0, uint(Buffer.from([2]))),
    uint(serial),
    alg,
    name(r.issuer.subject),
    seq(time(r.notBefore), time(r.notAfter)),
    name(r.subject),
    r.publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, r.issuer.key);
  return pem('CERTIFICATE', seq(tbs, alg, tlv(0x03, Buffer.concat([Buffer.from([0]), signature]))));
}

const DAY_MS = 86_400_000;

/**
 * A fresh CA (ECDSA P-256, `caDays`) and a serving certificate it signs for `sans` (DNS names and IP
 * addresses), valid from an hour ago (clocks differ) for `servingDays`.
 */
export function issueWebhookPki(
  sans: readonly string[],
  opts: { now?: Date; caDays?: number; servingDays?: number } = {},
): WebhookPki {
  const now = opts.now ?? new Date();
  const notBefore = new Date(now.getTime() - 3_600_000);
  const caKeys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const leafKeys = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const caSubject = 'modelcache webhook CA';
  const issuer = { subject: caSubject, key: caKeys.privateKey, publicKey: caKeys.publicKey };
  const caCert = certificate({
    subject: caSubject,
    publicKey: caKeys.publicKey,
    issuer,
    notBefore,
    notAfter: new Date(now.getTime() + (opts.caDays ?? 3650) * DAY_MS),
    ca: true,
  });
  const servingCert = certificate({
    subject: sans[0] ?? 'modelcache-webhook',
    publicKey: leafKeys.publicKey,
    issuer,
    notBefore,
    notAfter: new Date(now.getTime() + (opts.servingDays ?? 365) * DAY_MS),
    ca: false,
    sans,
  });
  const key = (k: KeyObject): string => k.export({ type: 'pkcs8', format: 'pem' }).toString();
  return { ca: caCert, serving: { cert: servingCert, key: key(leafKeys.privateKey) } };
}
