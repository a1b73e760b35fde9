// A CA and a serving certificate for the admission webhooks. Keys come from node:crypto (native and
// fast); the certificates are built and signed by node-forge, so no ASN.1 is written by hand here.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';

interface Issued {
  /** PEM of the certificate. */
  cert: string;
  /** PEM of its private key. */
  key: string;
}

export interface WebhookPki {
  /** PEM of the CA certificate; its key is thrown away once the serving certificate is signed. */
  ca: string;
  serving: Issued;
}

const DAY_MS = 86_400_000;

interface KeyPair {
  privatePem: string;
  publicKey: forge.pki.rsa.PublicKey;
  privateKey: forge.pki.rsa.PrivateKey;
}

function rsaKeys(): KeyPair {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const privatePem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const forgeKey = forge.pki.privateKeyFromPem(privatePem) as forge.pki.rsa.PrivateKey;
  return { privatePem, privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e) };
}

/** A positive serial of 16 random bytes, as hex (the high bit cleared so it is never read as negative). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString('hex');
}

function altName(san: string): { type: number; value?: string; ip?: string } {
  return isIP(san) ? { type: 7, ip: san } : { type: 2, value: san };
}

/**
 * A fresh CA (`caDays`) and a serving certificate it signs for `sans` (DNS names and IP addresses),
 * both valid from an hour ago (clocks differ); the serving one for `servingDays`.
 */
export function issueWebhookPki(
  sans: readonly string[],
  opts: { now?: Date; caDays?: number; servingDays?: number } = {},
): WebhookPki {
  const now = opts.now ?? new Date();
  const notBefore = new Date(now.getTime() - 3_600_000);
  const caKeys = rsaKeys();
  const caSubject = [{ name: 'commonName', value: 'modelcache webhook CA' }];

  const ca = forge.pki.createCertificate();
  ca.serialNumber = serial();
  ca.publicKey = caKeys.publicKey;
  ca.validity.notBefore = notBefore;
  ca.validity.notAfter = new Date(now.getTime() + (opts.caDays ?? 3650) * DAY_MS);
  ca.setSubject(caSubject);
  ca.setIssuer(caSubject);
  ca.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  ca.sign(caKeys.privateKey, forge.md.sha256.create());

  const leafKeys = rsaKeys();
  const leaf = forge.pki.createCertificate();
  leaf.serialNumber = serial();
  leaf.publicKey = leafKeys.publicKey;
  leaf.validity.notBefore = notBefore;
  leaf.validity.notAfter = new Date(now.getTime() + (opts.servingDays ?? 365) * DAY_MS);
  leaf.setSubject([{ name: 'commonName', value: sans[0] ?? 'modelcache-webhook' }]);
  leaf.setIssuer(caSubject);
  leaf.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: sans.map(altName) },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: ca.generateSubjectKeyIdentifier().getBytes() },
  ]);
  leaf.sign(caKeys.privateKey, forge.md.sha256.create());

  return {
    ca: forge.pki.certificateToPem(ca),
    serving: { cert: forge.pki.certificateToPem(leaf), key: leafKeys.privatePem },
  };
}
