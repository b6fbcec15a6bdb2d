/**
 * Attack: rspamd's data directory (var/lib/rspamd) belongs to rspamd's user, who may put anything
 * in it, and the DKIM keys live in its dkim subdirectory. rspamd parses hostile mail all day; once
 * its user is taken over, it replaces that subdirectory with a symlink to a directory of its
 * choice, and scoped (root) wrote each new key there, chowned to rspamd's user, and --purge
 * unlinked DOMAIN.SELECTOR.key files there: root writing and deleting outside the root.
 *
 * From the attacker's side, with a real scoped on a sandbox root whose rspamd is a stand-in
 * (recovery/fake-daemons.ts): the key directory is a symlink to a directory outside the root. A
 * set of mail.dkim must be refused, saying why and what to do, and leave that directory as it was;
 * a --purge must not delete the file of that name there either.
 */
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { lchown, mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectExit } from '../helpers/expect.js';
import { type Scoped, scoped, tempDir } from '../helpers/scoped.js';
import { FakeDaemons } from '../recovery/fake-daemons.js';

/** rspamd's user on Debian; any user other than root stands for it where rspamd is not installed. */
const RSPAMD_UID = (() => {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('_rspamd:'));
  return line ? Number(line.split(':')[2]) : 65_534;
})();

/** The symlink as rspamd's user would make it: owned by that user. */
async function attackersLink(target: string, at: string): Promise<void> {
  await symlink(target, at);
  await lchown(at, RSPAMD_UID, RSPAMD_UID);
}

describe('attack: the DKIM key directory as a symlink out of the root', { timeout: 60_000 }, () => {
  let d: Scoped;
  let fakes: FakeDaemons | undefined;

  beforeEach(async () => {
    d = await scoped({ postfix: true, listen: 'none', start: false });
    fakes = await FakeDaemons.install(d.root, ['rspamd']);
    await d.start();
  });

  afterEach(async () => {
    await fakes?.stopAll();
    await d?.close();
  });

  it('a new key is not written through it: the set is refused with the reason, and the outside directory stays empty', async () => {
    await using outside = await tempDir();
    await mkdir(path.join(d.root, 'var/lib/rspamd'), { recursive: true });
    await attackersLink(outside.path, path.join(d.root, 'var/lib/rspamd/dkim'));

    const set = await d.cpcmd(['scope:set', 'mail.dkim', 'example.com']);
    expect(set.code).not.toBe(0);
    expect(set.stderr).toMatch(/var\/lib\/rspamd\/dkim.*symlink that root did not make/);
    expect(readdirSync(outside.path)).toEqual([]);
    expect(set.stderr).toMatch(/remove it/);
    const get = await d.cpcmd(['scope:get', 'mail.dkim']);
    expectExit(get, 'ok');
    expect(get.stdout).not.toContain('example.com');
  });

  it('--purge does not delete a file of a key name through it', async () => {
    // A domain with a kept key, then the directory swapped for a symlink to where a file of that name is.
    expectExit(await d.cpcmd(['scope:set', 'mail.dkim', 'example.com', 's1']), 'ok');
    expectExit(await d.cpcmd(['scope:set', 'mail.dkim', 'example.com', 'false']), 'ok');
    await using outside = await tempDir();
    const keys = path.join(d.root, 'var/lib/rspamd/dkim');
    renameSync(keys, `${keys}.real`);
    await attackersLink(outside.path, keys);
    const victim = path.join(outside.path, 'example.com.s1.key');
    writeFileSync(victim, "not scoped's file\n");

    const purge = await d.cpcmd(['scope:set', 'mail.dkim', 'example.com', 'false', '--purge']);
    expect(purge.code).not.toBe(0);
    expect(purge.stderr).toMatch(/var\/lib\/rspamd\/dkim.*symlink that root did not make/);
    expect(existsSync(victim)).toBe(true);
  });
});

describe('attack: a DKIM key file as a symlink to a secret of root', { timeout: 60_000 }, () => {
  let d: Scoped;
  let fakes: FakeDaemons | undefined;

  afterEach(async () => {
    await fakes?.stopAll();
    await d?.close();
  });

  it("converge does not copy the symlink's target into a key file rspamd's user owns", async () => {
    d = await scoped({ postfix: true, listen: 'none', start: false });
    fakes = await FakeDaemons.install(d.root, ['rspamd']);
    await d.start();
    expectExit(await d.cpcmd(['scope:set', 'mail.dkim', 'example.com']), 'ok');

    // Root's TLS key (as Debian's snakeoil key: RSA in PKCS#8, 0640), outside the root.
    await using outside = await tempDir();
    const secret = path.join(outside.path, 'mail.key');
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(secret, pem, { mode: 0o640 });
    chmodSync(secret, 0o640);

    // rspamd's user owns var/lib/rspamd: it swaps the key directory for its own, with the key file a symlink to root's key.
    const keys = path.join(d.root, 'var/lib/rspamd/dkim');
    renameSync(keys, `${keys}.old`);
    await mkdir(keys);
    await lchown(keys, RSPAMD_UID, RSPAMD_UID);
    await attackersLink(secret, path.join(keys, 'example.com.dkim.key'));

    const converge = await d.cpcmd(['converge']);
    const file = path.join(keys, 'example.com.dkim.key');
    const copied = lstatSync(file).isFile() && readFileSync(file, 'utf8') === pem;
    expect(copied, 'root copied its own TLS key into a file rspamd owns').toBe(false);
    expect(converge.code).not.toBe(0);
    expect(converge.stderr).toMatch(/example\.com\.dkim\.key.*symlink that root did not make/);
    expect(readFileSync(secret, 'utf8')).toBe(pem);
  });
});
