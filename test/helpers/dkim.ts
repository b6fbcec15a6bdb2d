/**
 * DKIM verification by implementations independent of the signer (rspamd): Perl's Mail::DKIM
 * (libmail-dkim-perl) for RSA, Python's dkimpy (python3-dkim, python3-nacl) for ed25519, which
 * Debian 12's Mail::DKIM cannot verify. Each is handed the one TXT record the test publishes
 * instead of DNS. scripts/prepare.mjs --test installs both.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const HERE = path.dirname(new URL(import.meta.url).pathname);

const VERIFIERS = {
  rsa: { program: '/usr/bin/perl', script: path.join(HERE, 'dkim-verify.pl'), package: 'libmail-dkim-perl' },
  ed25519: { program: '/usr/bin/python3', script: path.join(HERE, 'dkim-verify.py'), package: 'python3-dkim python3-nacl' },
} as const;

export interface Verdict {
  /** The verifier accepted the signature. */
  pass: boolean;
  /** What the verifier printed (its result and why). */
  output: string;
}

/** Verify `message` (as the sink received it) against `record` (a zone-file TXT line, as scope:get mail.dkim DOMAIN prints it). */
export async function verifyDkim(message: string, record: string): Promise<Verdict> {
  const algorithm = /k=ed25519/.test(record) ? 'ed25519' : 'rsa';
  const v = VERIFIERS[algorithm];
  if (!existsSync(v.program)) throw new Error(`${v.program} is missing: install ${v.package} (npm test installs it: node scripts/prepare.mjs --test)`);
  const child = spawn(v.program, [v.script, record], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  child.stdin.end(message);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  if (code === 2 || /Can't locate|ModuleNotFoundError/.test(out)) throw new Error(`the ${algorithm} verifier could not run (install ${v.package}): ${out}`);
  return { pass: code === 0, output: out.trim() };
}
