import { copyFileSync, mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { HostSystem } from '@scoped/system';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * A sandbox root with Debian's stock Postfix configuration (main.cf and master.cf) and an
 * /etc/hosts, the files the first-party plugins manage. Postfix need not run: reloads are
 * skipped for a stopped Postfix, and postconf and postmap work on the files.
 */
export function postfixRoot(prefix = 'scoped-suite-'): string {
  const root = mkdtempSync(path.join(tmpdir(), prefix));
  const conf = path.join(root, 'etc', 'postfix');
  mkdirSync(conf, { recursive: true });
  copyFileSync('/usr/share/postfix/main.cf.debian', path.join(conf, 'main.cf'));
  copyFileSync('/etc/postfix/master.cf', path.join(conf, 'master.cf'));
  writeFileSync(path.join(root, 'etc', 'hosts'), '127.0.0.1\tlocalhost\n');
  // Spare Postfix's tools the pause they make before reading a just-written main.cf.
  const past = new Date(Date.now() - 5_000);
  utimesSync(path.join(conf, 'main.cf'), past, past);
  return root;
}

/**
 * The real system adapter on a sandbox root, for a plugin's own tests: what the engine reads
 * and writes through, without the engine (plugins may not import @scoped/system themselves).
 */
export function rootSystem(root: string): HostSystem {
  return new HostSystem({ root, kernelHostname: false });
}
