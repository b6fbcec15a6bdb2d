import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { USAGE, loadConfig, type ResolvedConfig } from './config.js';

/** Where this checkout (the install, in production /usr/local/lib/scoped) lies. */
const INSTALL = realpathSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..'));
const inside = (dir: string, parent: string) => dir === parent || dir.startsWith(`${parent}${path.sep}`);

describe('the default plugin directory', () => {
  const config = loadConfig(['--root', '/']) as ResolvedConfig;

  it('with --root / lies outside the install, so installing or updating scoped never adds a plugin', () => {
    expect(inside(config.pluginDir, INSTALL), `${config.pluginDir} is inside ${INSTALL}`).toBe(false);
    expect(inside(config.pluginDir, '/usr/local/lib/scoped'), 'inside the documented install').toBe(false);
    expect(inside(path.join(INSTALL, 'plugins'), config.pluginDir)).toBe(false);
  });

  it('is the one --help documents, under the root', () => {
    expect(USAGE).toContain(`--plugin-dir DIR       load every plugin directory in DIR (default ROOT${config.pluginDir})`);
    expect((loadConfig(['--root', '/srv/box']) as ResolvedConfig).pluginDir).toBe(path.join('/srv/box', config.pluginDir));
  });

  it('gives way to --plugin-dir', () => {
    expect((loadConfig(['--root', '/', '--plugin-dir', '/opt/scoped-plugins']) as ResolvedConfig).pluginDir).toBe('/opt/scoped-plugins');
  });
});
