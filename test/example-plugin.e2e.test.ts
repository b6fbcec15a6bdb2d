/**
 * The example plugin (plugins/example, scope example.banner) end to end: the real scoped loads
 * it through the `plugins:` key of its YAML config, the real cpcmd sets the SMTP greeting, and
 * a real, running Postfix greets a client with it; false leaves Postfix's own greeting. Nothing
 * in main.cf changes before the scope is set.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from './helpers/expect.js';
import { REPO, type Scoped, scoped, waitFor } from './helpers/scoped.js';

const EXAMPLE_PLUGIN = path.join(REPO, 'plugins/example');

let daemon: Scoped | undefined;

describe('example.banner (the example plugin) with a real Postfix', () => {
  beforeAll(async () => {
    daemon = await scoped({ postfix: { smtpd: true, running: true }, listen: 'none', config: { plugins: [EXAMPLE_PLUGIN] } });
  });

  afterAll(async () => {
    await daemon?.close();
  });

  it("loads from the config, sets the greeting a client sees, and false leaves Postfix's own", async () => {
    const d = daemon!;
    const b = d.postfix;
    const mainBefore = await readFile(b.mainCf, 'utf8');
    const pl = await d.cpcmd(['plugin:list']);
    expectExit(pl, 'ok');
    expect(pl.stdout).toMatch(/^scoped-plugin-example@0\.1\.0\s+loaded {2}example\.banner$/m);

    // Loaded, converged, and still nothing changed: the plugin was not asked for anything yet.
    expectExit(await d.cpcmd(['converge', 'example/banner']), 'ok');
    expect(await readFile(b.mainCf, 'utf8')).toBe(mainBefore);

    const reloads = async () => ((await b.maillog()).match(/postfix\/master\[\d+\]: reload/g) ?? []).length;
    const before = await reloads();
    expectExit(await d.cpcmd(['scope:set', 'example.banner', "'Mail only, no spam'"]), 'ok');
    expect(await b.param('smtpd_banner')).toBe('$myhostname ESMTP Mail only, no spam');
    expect((await d.cpcmd(['scope:get', 'example.banner'])).stdout.trim()).toBe('Mail only, no spam');
    await waitFor('Postfix to reload', async () => ((await reloads()) > before ? true : undefined));
    const greeting = await waitFor('the new greeting', async () => {
      const [first] = await b.smtpSubmit({ to: 'nobody@remote.test' });
      return first?.includes('Mail only, no spam') ? first : undefined;
    });
    expect(greeting).toBe(`220 ${await b.param('myhostname')} ESMTP Mail only, no spam`);

    expectExit(await d.cpcmd(['scope:set', 'example.banner', 'false']), 'ok');
    expect(await readFile(b.mainCf, 'utf8')).toBe(mainBefore.replace(/^smtpd_banner = .*\n/m, ''));
    await waitFor("Postfix's own greeting", async () => {
      const [first] = await b.smtpSubmit({ to: 'nobody@remote.test' });
      return first === `220 ${await b.param('myhostname')} ESMTP Postfix` ? true : undefined;
    });
    expectExit(await d.cpcmd(['scope:check', 'example.banner']), 'ok');
  });
});
