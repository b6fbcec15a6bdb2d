/**
 * The README's examples, run as a reader would run them: copied out of README.md into a
 * directory outside the repository, the packages installed from the tarballs `npm run pack`
 * makes, the plugin built with tsc, the client script run with node and cpcmd against a real
 * scoped, and what they print compared with what the README says they print.
 *
 * The README marks what this test runs with HTML comments (invisible when rendered) before a
 * fenced block:
 * - `<!-- file: PATH -->`  the block is written to PATH (relative to the example's directory);
 * - `<!-- run -->`         the block runs with bash in the example's directory and must exit 0;
 * - `<!-- prints[ stderr][, exit N] -->` the block is what the `run` before it prints on stdout
 *   (or stderr) and how it exits (0 unless said). A line `…` stands for any lines, `…` in a
 *   line for any text;
 * - `<!-- scoped: DIR -->` here the reader starts scoped with `--plugin DIR`: the test starts
 *   its own daemon so, on a fresh sandbox root.
 * Each `## ` section with marked blocks is one example, in a directory of its own. The steps
 * the README gives in the clone (`npm run pack`, `export PACKS=$PWD/packs`) are done once by the
 * test, with a temp directory for the tarballs; `PACKS` names it for every run. `cpcmd` on the
 * PATH is the repository's, pointed at the test's daemon; SCOPED_URL and SCOPED_TOKEN name its
 * WebSocket and admin token, as the README tells the reader to export them.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectExit } from './helpers/expect.js';
import { CPCMD_BIN, REPO, type RunResult, type Scoped, cleanEnv, run, scoped, tempDir } from './helpers/scoped.js';

type Step =
  | { kind: 'file'; path: string; text: string }
  | { kind: 'run'; script: string; prints?: { stream: 'stdout' | 'stderr'; exit: number; text: string } }
  | { kind: 'scoped'; plugin: string; text: string };

interface Example {
  section: string;
  steps: Step[];
}

/** The marked blocks of the README, by section. */
function examples(readme: string): Example[] {
  const found: Example[] = [];
  for (const part of readme.split(/^(?=## )/m)) {
    const section = /^## (.+)$/m.exec(part)?.[1] ?? '(top)';
    const steps: Step[] = [];
    for (const m of part.matchAll(/^<!-- (.+?) -->\n```[a-z]*\n([\s\S]*?)^```$/gm)) {
      const [, marker = '', text = ''] = m;
      const file = /^file: (\S+)$/.exec(marker);
      const prints = /^prints( stderr)?(?:, exit (\d+))?$/.exec(marker);
      const scoped = /^scoped: (\S+)$/.exec(marker);
      if (file) steps.push({ kind: 'file', path: file[1]!, text });
      else if (marker === 'run') steps.push({ kind: 'run', script: text });
      else if (scoped) steps.push({ kind: 'scoped', plugin: scoped[1]!, text });
      else if (prints) {
        const last = steps.at(-1);
        if (last?.kind !== 'run') throw new Error(`README section ${section}: <!-- ${marker} --> must follow a <!-- run --> block`);
        last.prints = { stream: prints[1] ? 'stderr' : 'stdout', exit: Number(prints[2] ?? 0), text };
      } else throw new Error(`README section ${section}: unknown marker <!-- ${marker} -->`);
    }
    if (steps.length) found.push({ section, steps });
  }
  return found;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The README's printed text as a pattern: a line `…` is any lines, `…` in a line any text. */
function printedPattern(text: string): RegExp {
  const lines = text.replace(/\n$/, '').split('\n');
  const body = lines.map((l) => (l === '…' ? '(?:[^\\n]*\\n)*?' : `${l.split('…').map(escapeRegExp).join('[^\\n]*')}\\n`)).join('');
  return new RegExp(`^${body}$`);
}

const readme = await readFile(path.join(REPO, 'README.md'), 'utf8');
const all = examples(readme);
/** The temp directories the whole file shares: the tarballs and the cpcmd on the reader's PATH. */
let packsDir: Awaited<ReturnType<typeof tempDir>> | undefined;
let shimsDir: Awaited<ReturnType<typeof tempDir>> | undefined;
let packs: string;
let shims: string;

/** A fresh scoped on a fresh root with a private Postfix. */
const startDaemon = (args: string[] = []): Promise<Scoped> => scoped({ postfix: true, args });

describe('the README examples, run outside the repository as written', () => {
  beforeAll(async () => {
    // The clone's steps: `npm run pack` (to a temp DIR rather than the clone's packs/).
    packsDir = await tempDir('scoped-readme-packs-');
    packs = packsDir.path;
    const packed = await run('npm', ['run', '--silent', 'pack', '--', packs], { cwd: REPO, timeoutMs: 120_000 });
    expect(packed.code, packed.stderr).toBe(0);
    expect(
      packed.stdout
        .trim()
        .split('\n')
        .map((f) => path.basename(f)),
    ).toEqual(['scoped-protocol.tgz', 'scoped-sdk.tgz', 'scoped-client.tgz']);
    // cpcmd as the reader has it on the PATH, talking to the daemon over its socket.
    shimsDir = await tempDir('scoped-readme-bin-');
    shims = shimsDir.path;
    await writeFile(
      path.join(shims, 'cpcmd'),
      `#!/bin/sh\nunset SCOPED_URL SCOPED_TOKEN\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CPCMD_BIN)} "$@"\n`,
    );
    await chmod(path.join(shims, 'cpcmd'), 0o755);
  }, 180_000);

  afterAll(async () => {
    await packsDir?.[Symbol.asyncDispose]();
    await shimsDir?.[Symbol.asyncDispose]();
  });

  it('the README has the examples this test runs: the client and the plugin', () => {
    expect(all.map((e) => e.section)).toEqual(['Automation', 'Writing a plugin']);
    // The clone's steps the test does itself are the ones the README gives.
    expect(readme).toContain('    npm run pack ');
    expect(readme).toContain('    export PACKS=$PWD/packs');
  });

  for (const example of all) {
    it(`${example.section}: every block runs outside the repository and prints what the README says`, async () => {
      await using exampleDir = await tempDir('scoped-readme-example-');
      const dir = exampleDir.path;
      expect(path.relative(REPO, dir).startsWith('..')).toBe(true);
      // The daemon the reader has running, replaced (on a fresh root) where the README starts one
      // with a plugin; whichever runs last is closed when the example ends, however it ends.
      let daemon = await startDaemon();
      try {
        for (const step of example.steps) {
          if (step.kind === 'file') {
            const file = path.join(dir, step.path);
            await mkdir(path.dirname(file), { recursive: true });
            await writeFile(file, step.text);
          } else if (step.kind === 'scoped') {
            expect(step.text).toMatch(/^scoped --plugin /);
            await daemon.close();
            daemon = await startDaemon(['--plugin', path.join(dir, step.plugin)]);
          } else {
            const env = cleanEnv({
              PACKS: packs,
              PATH: `${shims}:${process.env.PATH ?? ''}`,
              SCOPED_SOCKET: daemon.socket,
              SCOPED_URL: daemon.wsUrl,
              SCOPED_TOKEN: daemon.token(),
              // npm as the reader runs it, from the local cache first, without nagging.
              npm_config_prefer_offline: 'true',
              npm_config_audit: 'false',
              npm_config_fund: 'false',
              npm_config_update_notifier: 'false',
            });
            const r: RunResult = await run('bash', ['-e', '-c', step.script], { cwd: dir, env, timeoutMs: 240_000 });
            const what = `README ${example.section}:\n${step.script}\nexit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
            expect(r.code, what).toBe(step.prints?.exit ?? 0);
            if (step.prints) expect(r[step.prints.stream], what).toMatch(printedPattern(step.prints.text));
          }
        }
        // Everything the plugin's example loaded, loaded.
        expectExit(await daemon.cpcmd(['plugin:list']), 'ok');
      } finally {
        await daemon.close();
      }
    }, 400_000);
  }
});
