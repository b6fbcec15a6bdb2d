/**
 * A real headless Chromium (Debian's, driven by playwright-core) for the Scope GUI's tests: each
 * page keeps what the browser itself saw on the network (every WebSocket frame the daemon sent,
 * every response body), the console's errors (a CSP violation shows there), and can run axe-core
 * and leave screenshots as test artifacts.
 *
 *     await using b = await browser();
 *     const p = await b.page(1280);
 *     await p.page.goto(`http://127.0.0.1:${d.port}/#login=${code}`);
 *     expect(await p.axe()).toEqual([]);
 *     await p.screenshot('scopes');
 *
 * Disposing it closes the browser (and so every page); a browser left open by a crashed test
 * goes with the worker's process group.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { type Browser, type Page, chromium } from 'playwright-core';
import { REPO } from './proc.js';

/** Where the browser is: Debian's (npm test's set-up installs the chromium package). */
export const CHROMIUM = '/usr/bin/chromium';

/** Where the screenshots go (ignored by git): test-artifacts/gui/NAME-WIDTH.png. */
export const ARTIFACTS = path.join(REPO, 'test-artifacts/gui');

/** The two widths every page is checked at: a laptop and a phone. */
export const WIDTHS = [1280, 390] as const;

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** An axe-core violation as the tests report it. */
export interface Violation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/** One tab, with what it saw. */
export class BrowserPage {
  /** Every text frame a WebSocket of this page received, in order. */
  readonly framesReceived: string[] = [];
  /** Every text frame the page sent. */
  readonly framesSent: string[] = [];
  /** Every response's URL, status and body as text (bodies the browser could not give back are ''). */
  readonly responses: { url: string; status: number; body: string }[] = [];
  /** Console errors and uncaught exceptions (a refused inline script or style is one). */
  readonly errors: string[] = [];
  private readonly pendingBodies: Promise<void>[] = [];

  constructor(
    readonly page: Page,
    readonly width: number,
  ) {
    page.on('websocket', (ws) => {
      ws.on('framereceived', (f) => this.framesReceived.push(typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8')));
      ws.on('framesent', (f) => this.framesSent.push(typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8')));
    });
    page.on('response', (r) => {
      this.pendingBodies.push(
        r
          .text()
          .catch(() => '')
          .then((body) => {
            this.responses.push({ url: r.url(), status: r.status(), body });
          }),
      );
    });
    page.on('console', (m) => {
      if (m.type() === 'error') this.errors.push(m.text());
    });
    page.on('pageerror', (e) => this.errors.push(String(e)));
  }

  /** The responses, once every body seen so far has been read. */
  async allResponses(): Promise<{ url: string; status: number; body: string }[]> {
    await Promise.all(this.pendingBodies);
    return this.responses;
  }

  /**
   * All the text the DOM holds: the markup with every attribute, and every text node. What a
   * user typed into an input is the input's own state, not DOM text, and is left out.
   */
  domText(): Promise<string> {
    // Browser code as text: the tests are type-checked without the DOM's types.
    return this.page.evaluate<string>('document.documentElement.outerHTML + "\\n" + document.body.textContent');
  }

  /**
   * axe-core's violations of impact serious or critical on the page as it is now. axe runs through
   * the debugging protocol's evaluate, which the page's CSP does not govern: the page itself still
   * has no inline script.
   */
  async axe(): Promise<Violation[]> {
    await this.page.evaluate(axeSource);
    // axe is the global the source just defined (browser code as text: no DOM types here).
    const found = await this.page.evaluate<Violation[]>(
      `axe.run(document, { resultTypes: ['violations'] }).then((r) => r.violations.map((v) => ({
        id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => JSON.stringify(n.target)),
      })))`,
    );
    return found.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  }

  /** A full-page screenshot, test-artifacts/gui/NAME-WIDTH.png; its path. */
  async screenshot(name: string): Promise<string> {
    await mkdir(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, `${name}-${this.width}.png`);
    await this.page.screenshot({ path: file, fullPage: true });
    return file;
  }
}

/** A headless Chromium; `page(width)` opens a fresh context (no shared cookies) with one tab. */
export class TestBrowser {
  private constructor(private readonly browser: Browser) {}

  static async launch(): Promise<TestBrowser> {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: run node scripts/prepare.mjs --test (it installs Debian's chromium)`);
    // --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
    return new TestBrowser(
      await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] }),
    );
  }

  async page(width: number = WIDTHS[0]): Promise<BrowserPage> {
    const context = await this.browser.newContext({ viewport: { width, height: 900 } });
    return new BrowserPage(await context.newPage(), width);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.browser.close();
  }
}

export const browser = (): Promise<TestBrowser> => TestBrowser.launch();
