import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrustChecker } from './plugin-trust.js';

const NOBODY = 65534;

describe('TrustChecker (as root, on temp directories)', () => {
  let top: string;
  /** A plugin directory with package.json, index.js and node_modules/dep/index.js, mode 0755/0644. */
  const plugin = (rel: string) => {
    const dir = path.join(top, rel);
    mkdirSync(path.join(dir, 'node_modules/dep'), { recursive: true });
    writeFileSync(path.join(dir, 'package.json'), '{}\n');
    writeFileSync(path.join(dir, 'index.js'), 'export default {};\n');
    writeFileSync(path.join(dir, 'node_modules/dep/index.js'), 'export {};\n');
    // Modes set outright: the umask of whoever runs the tests must not decide them.
    for (const d of [dir, path.join(dir, 'node_modules'), path.join(dir, 'node_modules/dep')]) chmodSync(d, 0o755);
    for (const f of ['package.json', 'index.js', 'node_modules/dep/index.js']) chmodSync(path.join(dir, f), 0o644);
    return dir;
  };

  beforeAll(() => {
    if (process.getuid?.() !== 0) throw new Error('these tests chown files: run them as root');
    top = mkdtempSync(path.join(os.tmpdir(), 'scoped-trust-'));
  });
  afterAll(() => rmSync(top, { recursive: true, force: true }));

  it('trusts a root-owned plugin below a sticky root-owned directory such as /tmp', () => {
    expect(new TrustChecker().plugin(plugin('clean'))).toBeUndefined();
  });

  it('refuses a group-writable file deep in node_modules, naming it and the fix', () => {
    const dir = plugin('deep');
    chmodSync(path.join(dir, 'node_modules/dep/index.js'), 0o664);
    expect(new TrustChecker().plugin(dir)).toBe(
      `untrusted: ${dir}/node_modules/dep/index.js is writable by its group (mode 0664); scoped runs plugins as root, so a plugin, every file in it and every directory above it must be owned by root and writable only by root: chmod go-w ${dir}/node_modules/dep/index.js`,
    );
  });

  it('refuses a file that another user owns and may write, with both fixes', () => {
    const dir = plugin('foreign');
    chownSync(path.join(dir, 'package.json'), NOBODY, NOBODY);
    chmodSync(path.join(dir, 'package.json'), 0o666);
    expect(new TrustChecker().plugin(dir)).toMatch(
      /package\.json is owned by uid 65534, not root and writable by everyone \(mode 0666\);.*: chown root \S+ && chmod go-w \S+package\.json$/,
    );
  });

  it('refuses a sticky directory as the plugin itself or as the plugin directory, where anyone could add files', () => {
    const dir = plugin('sticky-self');
    chmodSync(dir, 0o1777);
    expect(new TrustChecker().plugin(dir)).toMatch(/sticky-self is writable by everyone \(mode 1777\)/);
    expect(new TrustChecker().container(dir)).toMatch(/sticky-self is writable by everyone \(mode 1777\)/);
  });

  it('refuses a world-writable directory above, and a sticky one that another user owns', () => {
    const open = path.join(top, 'open');
    const dir = plugin('open/p');
    chmodSync(open, 0o777);
    expect(new TrustChecker().plugin(dir)).toMatch(new RegExp(`^untrusted: ${open} is writable by everyone \\(mode 0777\\)`));
    chmodSync(open, 0o1777);
    expect(new TrustChecker().plugin(dir)).toBeUndefined();
    chownSync(open, NOBODY, NOBODY);
    expect(new TrustChecker().plugin(dir)).toMatch(new RegExp(`^untrusted: ${open} is owned by uid 65534, not root and writable by everyone \\(mode 1777\\)`));
  });

  it('follows symlinks to what node would import, checks where they lead, and trusts links into code the daemon already loaded', () => {
    const elsewhere = path.join(top, 'elsewhere');
    mkdirSync(path.join(elsewhere, 'lib'), { recursive: true, mode: 0o755 });
    writeFileSync(path.join(elsewhere, 'lib/x.js'), '', { mode: 0o644 });
    chmodSync(elsewhere, 0o755);
    chmodSync(path.join(elsewhere, 'lib'), 0o755);
    const dir = plugin('linked');
    symlinkSync(path.join(elsewhere, 'lib'), path.join(dir, 'node_modules/lib'));
    symlinkSync(dir, path.join(dir, 'node_modules/loop'));
    symlinkSync(path.join(top, 'missing'), path.join(dir, 'node_modules/dangling'));
    expect(new TrustChecker().plugin(dir)).toBeUndefined();
    chmodSync(path.join(elsewhere, 'lib/x.js'), 0o646);
    expect(new TrustChecker().plugin(dir)).toMatch(/elsewhere\/lib\/x\.js is writable by everyone/);
    expect(new TrustChecker([path.join(elsewhere, 'lib')]).plugin(dir)).toBeUndefined();
    chmodSync(elsewhere, 0o777);
    expect(new TrustChecker().plugin(dir)).toMatch(/elsewhere is writable by everyone \(mode 0777\)/);
  });

  it('checks an entry file that package.json places outside the plugin', () => {
    const outside = path.join(top, 'entry-outside.js');
    writeFileSync(outside, '');
    chownSync(outside, NOBODY, NOBODY);
    expect(new TrustChecker().file(outside)).toMatch(/entry-outside\.js is owned by uid 65534/);
  });
});
