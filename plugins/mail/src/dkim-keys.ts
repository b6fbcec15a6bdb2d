/**
 * DKIM keys as rspamd reads them, and the DNS records that publish their public halves.
 * RSA keys are PKCS#8 PEM; ed25519 keys are what `rspamadm dkim_keygen -t ed25519` writes
 * (base64 of the 32-byte seed and the 32-byte public key): rspamd 3.4 cannot load an
 * ed25519 key from PEM.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';

export const ALGORITHMS = ['rsa', 'ed25519'] as const;
export type Algorithm = (typeof ALGORITHMS)[number];

const generate = promisify(generateKeyPair);

/** The DER prefix of a PKCS#8 ed25519 private key, before its 32-byte seed (RFC 8410). */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A new private key in the form rspamd reads, ending in a newline. RSA keys are 2048 bits. */
export async function newKey(algorithm: Algorithm): Promise<string> {
  if (algorithm === 'rsa') {
    const { privateKey } = await generate('rsa', { modulusLength: 2048 });
    return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  }
  const { privateKey } = await generate('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return `${Buffer.concat([Buffer.from(jwk.d!, 'base64url'), Buffer.from(jwk.x!, 'base64url')]).toString('base64')}\n`;
}

/** The private key a key file holds, or null when it holds none scoped can read. */
function privateKeyOf(text: string): KeyObject | null {
  const trimmed = text.trim();
  try {
    if (trimmed.startsWith('-----BEGIN')) return createPrivateKey(trimmed);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) return null;
    const raw = Buffer.from(trimmed, 'base64');
    if (raw.length !== 32 && raw.length !== 64) return null;
    return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, raw.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
  } catch {
    return null;
  }
}

/** The algorithm of a key file's key, or null when the file holds no usable DKIM key. */
export function keyAlgorithm(text: string): Algorithm | null {
  const key = privateKeyOf(text);
  const type = key?.asymmetricKeyType;
  if (type === 'ed25519') return type;
  // DKIM verifiers need at least 1024 bits (RFC 8301); a smaller key in the file is no usable key.
  if (type === 'rsa' && (key!.asymmetricKeyDetails?.modulusLength ?? 0) >= 1024) return type;
  return null;
}

/**
 * The public half as a DKIM record's p= value: the DER SubjectPublicKeyInfo for RSA
 * (RFC 6376), the bare 32-byte key for ed25519 (RFC 8463).
 */
function publicValue(key: KeyObject): string {
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  return (key.asymmetricKeyType === 'ed25519' ? spki.subarray(spki.length - 32) : spki).toString('base64');
}

/** DNS character-strings are at most 255 bytes; a longer TXT value is split into several. */
function characterStrings(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += 255) out.push(text.slice(i, i + 255));
  return out;
}

/**
 * The TXT record that publishes a key, in zone-file form:
 * `SELECTOR._domainkey.DOMAIN. IN TXT ( "v=DKIM1; k=rsa; " "p=…" )`. Null when the file holds no usable key.
 */
export function txtRecord(domain: string, selector: string, keyText: string): string | null {
  const key = privateKeyOf(keyText);
  const algorithm = keyAlgorithm(keyText);
  if (!key || !algorithm) return null;
  const strings = [`v=DKIM1; k=${algorithm}; `, ...characterStrings(`p=${publicValue(key)}`)];
  return `${selector}._domainkey.${domain}. IN TXT ( ${strings.map((s) => `"${s}"`).join(' ')} )`;
}
