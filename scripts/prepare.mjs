#!/usr/bin/env node
// Makes a fresh clone ready: installs what is missing (npm packages; Debian's postfix when
// run as root, or says what to install), then builds (turbo run build). Idempotent and quick when all is there.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const say = (msg) => process.stderr.write(`prepare: ${msg}\n`);
const run = (cmd, args, env = {}) => {
  const r = spawnSync(cmd, args, { cwd: repo, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) {
    say(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
};
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

const [major] = process.versions.node.split('.').map(Number);
if (major < 20) {
  say(`node ${process.versions.node} is too old: install node 20 or newer`);
  process.exit(1);
}

// Postfix itself, and the SASL modules its smtp client needs to log in to a smart host. With
// --test, also what the end-to-end tests run for real: the spam filters, Redis for rspamd's
// learning, and Perl's Mail::DKIM and Python's dkimpy to verify signatures independently (dkimpy,
// with PyNaCl, for ed25519, which Debian 12's Mail::DKIM cannot verify); PostSRSd for SRS, Dovecot's
// auth service for SASL on submission, and dnsmasq as the test zones' DNS server. With --test or
// --bench, Chromium too: the Scope GUI's browser tests and its first-load bench drive it headless.
const forTests = process.argv.includes('--test');
const forBench = process.argv.includes('--bench');
const debianPackages = [
  'postfix',
  'libsasl2-modules',
  ...(forTests
    ? ['rspamd', 'spamassassin', 'spamd', 'spamc', 'redis-server', 'libmail-dkim-perl', 'python3-dkim', 'python3-nacl', 'postsrsd', 'dovecot-core', 'dnsmasq']
    : []),
  ...(forTests || forBench ? ['chromium'] : []),
];
const dpkgMissing = () =>
  debianPackages.filter((p) => spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' }).stdout?.includes('install ok installed') !== true);
const missing = has('dpkg-query') ? dpkgMissing() : has('postconf') ? [] : debianPackages;
if (missing.length) {
  if (process.getuid?.() === 0 && has('apt-get')) {
    say(`installing Debian's ${missing.join(' ')} (no service is started)`);
    run('apt-get', ['update', '-qq']);
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { DEBIAN_FRONTEND: 'noninteractive' });
  } else {
    say(`missing: ${missing.join(' ')}. Install them first, as root: DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing.join(' ')}`);
    process.exit(1);
  }
}

const marker = path.join(repo, 'node_modules', '.package-lock.json');
if (!existsSync(marker) || !existsSync(path.join(repo, 'node_modules', 'sqlite3', 'build', 'Release', 'node_sqlite3.node'))) {
  say('installing npm packages (sqlite3 builds from source; that takes a minute or two)');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

say('building');
// turbo builds each workspace with tsc -b in dependency order, from its local cache when nothing changed.
run(path.join(repo, 'node_modules', '.bin', 'turbo'), ['run', 'build', '--output-logs=errors-only'], { TURBO_TELEMETRY_DISABLED: '1' });
try {
  execFileSync(path.join(repo, 'node_modules', '.bin', 'cpcmd'), ['--version'], { stdio: 'ignore' });
} catch {
  say('the cpcmd binary does not run after the build');
  process.exit(1);
}
