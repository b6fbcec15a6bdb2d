/**
 * The Scope GUI in a real headless Chromium against a real scoped (with a private Postfix and a
 * slow third-party plugin): logging in through `cpcmd gui`'s address, setting a scope through its
 * generated form, a preview that shows no secret anywhere the browser can see, an Apply cancelled
 * halfway, the live event feed, a reader's page, the daemon's message at the field, and axe-core
 * plus screenshots (test-artifacts/gui/) of every page at 1280 and 390 px.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BrowserPage, type TestBrowser, WIDTHS, browser } from '../helpers/browser.js';
import { expectExit } from '../helpers/expect.js';
import { PluginDirs } from '../helpers/plugin-dir.js';
import { type Scoped, scoped, treeDigest } from '../helpers/scoped.js';

/** Files the bulk plugin writes: enough that an Apply is still running when the page's Cancel arrives. */
const N = 1000;

/** `bulk.files VALUE` writes VALUE into N files under /etc/bulk, one change (one progress step) each. */
const BULK_PLUGIN = `
import { ScopeInputError, definePlugin, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';
const FILES = Array.from({ length: ${N} }, (_, i) => '/etc/bulk/f' + String(i).padStart(4, '0') + '.conf');
const text = (value, i) => '# bulk file ' + i + '\\nvalue = ' + value + '\\n';
const Value = z.string().regex(/^[a-z0-9-]*$/, 'lowercase letters, digits and dashes');
const bulkVar = defineVar({ name: 'bulk_value', description: 'what every bulk file says', schema: Value, default: '' });
const bulkUnit = defineUnit({
  name: 'bulk/files',
  description: 'the files under /etc/bulk',
  reads: ['bulk_value'],
  observe: ({ system }) => Promise.all(FILES.map((f) => system.readFile(f))),
  plan(vars, observed) {
    const changes = [];
    FILES.forEach((path, i) => {
      if (vars.bulk_value === '') { if (observed[i] !== null) changes.push({ kind: 'file.remove', path, current: observed[i] }); }
      else if (observed[i] !== text(vars.bulk_value, i)) changes.push({ kind: 'file', path, content: text(vars.bulk_value, i), mode: 0o644, current: observed[i] });
    });
    return changes;
  },
});
const bulkScope = defineScope({
  name: 'bulk.files',
  summary: 'Write one value into ${N} files under /etc/bulk',
  help: 'A test plugin whose converge takes a while.',
  usage: 'VALUE',
  examples: ['cpcmd scope:set bulk.files v1'],
  schema: Value,
  vars: ['bulk_value'],
  parseArgs(args) {
    if (args.length !== 1) throw new ScopeInputError('bulk.files takes one VALUE');
    return String(args[0]);
  },
  toVars: (value) => ({ bulk_value: value }),
  async get({ system }) {
    const t = await system.readFile(FILES[0]);
    return t === null ? '' : /^value = (.*)$/m.exec(t)[1];
  },
});
export default definePlugin({ name: 'scoped-plugin-bulk', version: '1.0.0', apiVersion: 1, vars: [bulkVar], units: [bulkUnit], scopes: [bulkScope] });
`;

let plugins: PluginDirs | undefined;
let d: Scoped;
let b: TestBrowser;

/** `cpcmd gui`'s address: over the unix socket (the admin), or over TCP for another token. */
async function loginAddress(token?: string): Promise<string> {
  const r = await d.cpcmd(['gui'], token === undefined ? {} : { url: d.url, token });
  // When the daemon is gone, its own last words say why.
  if (r.code !== 0) r.stderr += `\n(scoped ${d.running ? 'runs' : 'has exited'}; its log ends:\n${d.stderr().slice(-3_000)})`;
  expectExit(r, 'ok');
  return r.stdout.trim();
}

/** A fresh browser context at `width`, logged in through a new `cpcmd gui` address, on the scope list. */
async function loggedIn(width: number = WIDTHS[0], token?: string): Promise<BrowserPage> {
  const p = await b.page(width);
  await p.page.goto(await loginAddress(token));
  await p.page.getByRole('heading', { name: 'Scopes', level: 1 }).waitFor();
  return p;
}

/** Go to a page of the GUI by its hash route and wait for its heading. */
async function open(p: BrowserPage, hash: string, heading: string | RegExp): Promise<void> {
  await p.page.evaluate(`location.hash = ${JSON.stringify(hash)}`);
  await p.page.getByRole('heading', { name: heading, level: 1 }).waitFor();
}

const etc = () => path.join(d.root, 'etc');

describe('the Scope GUI in a real Chromium', () => {
  beforeAll(async () => {
    plugins = await PluginDirs.create();
    const dir = await plugins.write('bulk', BULK_PLUGIN);
    d = await scoped({ postfix: true, args: ['--plugin', dir] });
    b = await browser();
  });

  afterAll(async () => {
    await b?.[Symbol.asyncDispose]();
    await d?.close();
    await plugins?.remove();
  });

  it("logs in through cpcmd gui's address: the code leaves the address bar and the history, and the same address does not log in twice", async () => {
    const url = await loginAddress();
    const code = url.slice(url.indexOf('#login=') + '#login='.length);
    const p = await b.page();
    await p.page.goto(url);
    await p.page.getByRole('heading', { name: 'Scopes', level: 1 }).waitFor();
    await p.page.getByRole('link', { name: 'net.hostname' }).waitFor();
    expect(p.page.url()).toBe(`http://127.0.0.1:${d.port}/`);
    // (Browser code as text: the tests are type-checked without the DOM's types.)
    const kept = await p.page.evaluate<{ href: string; cookie: string; local: string; session: string }>(
      '({ href: location.href, cookie: document.cookie, local: JSON.stringify({ ...localStorage }), session: JSON.stringify({ ...sessionStorage }) })',
    );
    expect(kept.href).not.toContain(code);
    expect(kept.cookie).toBe(''); // the session cookie is HttpOnly
    expect(kept.local + kept.session).not.toContain(code);
    // Nothing in localStorage; this tab's sessionStorage holds only the session's key (the cookie alone is no session).
    expect(kept.local).toBe('{}');
    expect(Object.keys(JSON.parse(kept.session))).toEqual(['scoped-session-key']);
    // A reload keeps the session: the key stays with this tab and origin.
    await p.page.reload();
    await p.page.getByRole('link', { name: 'net.hostname' }).waitFor();
    expect(p.errors.filter((e) => /Content Security Policy|Refused/.test(e))).toEqual([]);
    // The code's history entry was replaced, not pushed over: Back leaves the page, Forward comes back without it.
    await p.page.goBack();
    expect(p.page.url()).toBe('about:blank');
    await p.page.goForward();
    expect(p.page.url()).toBe(`http://127.0.0.1:${d.port}/`);

    const again = await b.page();
    await again.page.goto(url);
    await again.page.getByRole('heading', { name: 'Log in to scoped' }).waitFor();
    await expect.poll(() => again.page.getByRole('alert').textContent()).toMatch(/this login address was used or has expired; run cpcmd gui again/);
    expect(again.page.url()).toBe(`http://127.0.0.1:${d.port}/`);
    await p.page.context().close();
    await again.page.context().close();
  });

  it('sets net.hostname through the form: the files change and the page shows the new value and revision', async () => {
    const p = await loggedIn();
    await p.page.getByRole('link', { name: 'net.hostname' }).click();
    await p.page.getByRole('heading', { name: 'net.hostname', level: 1 }).waitFor();
    await p.page.getByLabel('net.hostname', { exact: true }).fill('gui.example.org');
    await p.page.getByRole('button', { name: 'Apply' }).click();
    await p.page.getByText(/^Applied\. The scope is now at revision \d+/).waitFor();

    expect(await d.file('etc/hostname')).toBe('gui.example.org\n');
    expect(await d.file('etc/mailname')).toBe('gui.example.org\n');
    const now = await d.ok('scope.get', { name: 'net.hostname' });
    expect(now.value).toBe('gui.example.org');
    await expect.poll(() => p.page.locator('.revision').textContent()).toBe(String(now.revision));
    expect(await p.page.locator('pre.value').first().textContent()).toBe('"gui.example.org"');
    await p.page.context().close();
  });

  it('previews mail.smart-host with a password: the plan shows [redacted], and the password is in no DOM text, no frame from the daemon and no response body', async () => {
    const password = `pw-${randomBytes(12).toString('hex')}`;
    const p = await loggedIn();
    await open(p, '#/scope/mail.smart-host', 'mail.smart-host');
    await p.page.getByLabel('mail.smart-host', { exact: true }).selectOption({ label: 'host, username, password' });
    await p.page.getByLabel('host', { exact: true }).fill('[relay.example.com]:587');
    await p.page.getByLabel('username (optional)').fill('alice');
    await p.page.getByLabel('password (optional)').fill(password);
    await p.page.getByRole('button', { name: 'Preview' }).click();
    await p.page.getByRole('heading', { name: 'Preview: what Apply would change' }).waitFor();

    const dom = await p.domText();
    expect(dom).toContain('[redacted]');
    expect(dom).toContain('relayhost = "[relay.example.com]:587"');
    expect(dom).not.toContain(password);
    // The page did send it (so the checks below would see it if the daemon sent it back)...
    expect(p.framesSent.some((f) => f.includes(password))).toBe(true);
    // ...and nothing the browser received holds it.
    expect(p.framesReceived.length).toBeGreaterThan(0);
    expect(p.framesReceived.filter((f) => f.includes(password))).toEqual([]);
    const responses = await p.allResponses();
    expect(responses.length).toBeGreaterThan(0);
    expect(responses.filter((r) => r.body.includes(password)).map((r) => r.url)).toEqual([]);
    // A preview writes nothing.
    expect(await d.file('etc/postfix/smarthost-auth')).toBeNull();
    await p.page.context().close();
  });

  it('applies a job with progress and cancels it: the page shows cancelled and the files are byte-identical', async () => {
    expectExit(await d.cpcmd(['scope:set', 'bulk.files', 'v1']), 'ok');
    const before = await treeDigest(etc());
    expect(Object.keys(before).filter((f) => f.startsWith('bulk/'))).toHaveLength(N);

    const p = await loggedIn();
    await open(p, '#/scope/bulk.files', 'bulk.files');
    await p.page.getByLabel('bulk.files', { exact: true }).fill('v2');
    await p.page.getByRole('button', { name: 'Apply' }).click();
    const progress = p.page.getByRole('progressbar');
    await p.page.getByText(/^Applying: [1-9]\d* of 1000 changes$/).waitFor();
    expect(Number(await progress.getAttribute('value'))).toBeGreaterThan(0);
    await p.page.getByRole('button', { name: 'Cancel' }).click();
    await p.page.getByText(/^Cancelled: everything it changed was rolled back\..*cancelled after \d+ of 1000 changes/).waitFor();
    await expect.poll(() => p.page.getByRole('button', { name: 'Cancel' }).count()).toBe(0);

    expect(await treeDigest(etc())).toEqual(before);
    expect((await d.ok('scope.get', { name: 'bulk.files' })).value).toBe('v1');
    await p.page.context().close();
  });

  it('shows a change cpcmd makes in another process in the event feed, without a reload', async () => {
    const p = await loggedIn();
    await open(p, '#/events', 'Events');
    const loads = p.responses.length;
    expectExit(await d.cpcmd(['scope:set', 'net.hostname', 'feed.example.org']), 'ok');
    await p.page.getByText(/set net\.hostname to "feed\.example\.org" \(revision \d+\)/).waitFor();
    expect(p.responses.length).toBe(loads); // nothing was fetched again
    await p.page.context().close();
  });

  it("gives a reader's session no Apply (and no Preview), and a scope-limited operator only its scopes", async () => {
    const reader = await d.ok('token.create', { role: 'reader', name: 'gui-reader' });
    const r = await loggedIn(WIDTHS[0], reader.token);
    await open(r, '#/scope/net.hostname', 'net.hostname');
    await r.page.getByText('Your session reads only: it cannot change scopes.').waitFor();
    expect(await r.page.getByRole('button', { name: 'Apply' }).count()).toBe(0);
    expect(await r.page.getByRole('button', { name: 'Preview' }).count()).toBe(0);
    expect(await r.page.getByRole('link', { name: 'Tokens' }).count()).toBe(0);
    await r.page.context().close();

    const operator = await d.ok('token.create', { role: 'operator', name: 'gui-mail-op', scopes: ['mail.*'] });
    const o = await loggedIn(WIDTHS[0], operator.token);
    await o.page.getByRole('link', { name: 'mail.smart-host' }).waitFor();
    const names = await o.page.locator('ul.scopes > li > a').allTextContents();
    expect(names.length).toBeGreaterThan(0);
    expect(names.filter((n) => !n.startsWith('mail.'))).toEqual([]);
    await o.page.context().close();
  });

  it("shows the daemon's message for an invalid value at the field, and writes nothing", async () => {
    const expected = await d.call('scope.set', { name: 'net.hostname', value: 'bad host!', dryRun: true });
    expect('error' in expected).toBe(true);
    const issue = (expected as { error: { data: { issues: { message: string }[] } } }).error.data.issues[0]!.message;
    const before = await treeDigest(etc());

    const p = await loggedIn();
    await open(p, '#/scope/net.hostname', 'net.hostname');
    const field = p.page.getByLabel('net.hostname', { exact: true });
    await field.fill('bad host!');
    await p.page.getByRole('button', { name: 'Apply' }).click();
    await expect.poll(() => field.getAttribute('aria-invalid')).toBe('true');
    const described = await field.getAttribute('aria-describedby');
    expect(await p.page.locator(`#${described}`).textContent()).toBe(issue);
    expect(await treeDigest(etc())).toEqual(before);
    await p.page.context().close();
  });

  it('has no serious or critical axe-core violation on any page, at 1280 and 390 px (screenshots in test-artifacts/gui)', async () => {
    for (const width of WIDTHS) {
      const login = await b.page(width);
      await login.page.goto(`http://127.0.0.1:${d.port}/`);
      await login.page.getByRole('heading', { name: 'Log in to scoped' }).waitFor();
      expect(await login.axe(), `login at ${width}`).toEqual([]);
      await login.screenshot('login');
      await login.page.context().close();

      const p = await loggedIn(width);
      const pages: [string, string, string | RegExp][] = [
        ['scopes', '#/', 'Scopes'],
        ['events', '#/events', 'Events'],
        ['audit', '#/audit', 'Audit trail'],
        ['tokens', '#/tokens', 'Tokens'],
        ['scope', '#/scope/mail.smart-host', 'mail.smart-host'],
      ];
      for (const [name, hash, heading] of pages) {
        await open(p, hash, heading);
        if (name === 'scopes') await p.page.getByRole('link', { name: 'net.hostname' }).waitFor();
        if (name === 'audit') await p.page.locator('ol.audit').waitFor();
        if (name === 'tokens') await p.page.locator('ul.tokens > li').first().waitFor();
        if (name === 'scope') {
          await p.page.getByLabel('mail.smart-host', { exact: true }).selectOption({ label: 'host, username, password' });
          await p.page.getByLabel('host', { exact: true }).fill('relay.example.com');
          await p.page.getByRole('button', { name: 'Preview' }).click();
          await p.page.getByRole('heading', { name: 'Preview: what Apply would change' }).waitFor();
        }
        expect(await p.axe(), `${name} at ${width}`).toEqual([]);
        // Nothing wider than the window: it reads at this width without scrolling sideways.
        expect(await p.page.evaluate<number>('document.documentElement.scrollWidth'), `${name} at ${width}`).toBeLessThanOrEqual(width);
        await p.screenshot(name);
      }
      expect(p.errors.filter((e) => /Content Security Policy|Refused/.test(e))).toEqual([]);
      await p.page.context().close();
    }
  });

  it('works from the keyboard alone: Tab reaches a scope, Enter opens it, and Preview is reached and pressed by keys', async () => {
    const p = await loggedIn();
    await p.page.getByLabel('Search scopes').focus();
    await p.page.keyboard.type('hostname');
    await expect.poll(() => p.page.locator('ul.scopes > li').count()).toBe(1);
    await p.page.keyboard.press('Tab');
    expect(await p.page.evaluate<string>('document.activeElement?.textContent')).toBe('net.hostname');
    await p.page.keyboard.press('Enter');
    await p.page.getByRole('heading', { name: 'net.hostname', level: 1 }).waitFor();
    // The heading has focus; Tab walks on to the value's field.
    let steps = 0;
    while ((await p.page.evaluate<string>('document.activeElement?.id')) !== 'f-value' && steps++ < 20) await p.page.keyboard.press('Tab');
    await p.page.keyboard.press('Control+a');
    await p.page.keyboard.type('keys.example.org');
    await p.page.keyboard.press('Enter'); // submits the form: Preview
    await p.page.getByRole('heading', { name: 'Preview: what Apply would change' }).waitFor();
    expect(await p.domText()).toContain('keys.example.org');
    await p.page.context().close();
  });
});
