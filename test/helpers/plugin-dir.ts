/**
 * Third-party plugins written for a test into a directory outside the repository, laid out
 * the way a plugin author ships one: a package.json that declares `"scoped": {"apiVersion": 1}`
 * and whose `main` is plain ESM JavaScript importing `@scoped/sdk`. An author would
 * `npm install @scoped/sdk` into the plugin's node_modules; here node_modules/@scoped/sdk is a
 * symlink to the workspace's sdk package, which is what npm's workspace install makes too.
 */
import { realpathSync } from 'node:fs';
import { chmod, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO, makeTempDir } from './proc.js';

/** A temp directory (outside the repository) that holds plugin directories; remove() deletes it. */
export class PluginDirs {
  private constructor(readonly dir: string) {}

  static async create(): Promise<PluginDirs> {
    const dir = await makeTempDir('scoped-e2e-plugins-');
    if (dir.startsWith(`${REPO}/`)) throw new Error(`the plugin directory ${dir} must lie outside the repository`);
    return new PluginDirs(dir);
  }

  /**
   * Write one plugin package: `<dir>/<folder>/package.json`, `index.js` with `source`, and
   * node_modules/@scoped/sdk. Returns the plugin's directory (what `--plugin` takes).
   */
  async write(folder: string, source: string, opts: { name?: string; apiVersion?: unknown } = {}): Promise<string> {
    const dir = path.join(this.dir, folder);
    const created = await mkdir(path.join(dir, 'node_modules/@scoped'), { recursive: true });
    const manifest = {
      name: opts.name ?? `scoped-plugin-${folder}`,
      version: '1.0.0',
      type: 'module',
      main: './index.js',
      peerDependencies: { '@scoped/sdk': '*' },
      scoped: { apiVersion: 'apiVersion' in opts ? opts.apiVersion : 1 },
    };
    await writeFile(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    await writeFile(path.join(dir, 'index.js'), source);
    // scoped loads only plugins that are root's and writable by nobody else: modes set outright, whatever the umask.
    for (let d = path.join(dir, 'node_modules/@scoped'); created && d.startsWith(created); d = path.dirname(d)) await chmod(d, 0o755);
    for (const f of ['package.json', 'index.js']) await chmod(path.join(dir, f), 0o644);
    await symlink(realpathSync(path.join(REPO, 'node_modules/@scoped/sdk')), path.join(dir, 'node_modules/@scoped/sdk'), 'dir');
    return dir;
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.remove();
  }
}
