/**
 * What cpcmd teaches about itself, from the one declaration of each command: `cpcmd --help`
 * lists every command, `cpcmd help [COMMAND]` and `COMMAND --help` show the variadic
 * arguments, `-v`/`--version` print the version. oclif.manifest.json (and the
 * scope names for completion) are written at build, and a check fails when they are stale.
 */
import { cp, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CPCMD_BIN, REPO, cleanEnv, run } from '../helpers/proc.js';

const CLI = path.join(REPO, 'packages/cli');
// Help and version go through oclif on either path (the parity test compares the two).
const cpcmd = (args: string[]) => run(process.execPath, [CPCMD_BIN, ...args], { env: cleanEnv() });

describe('help and version', () => {
  it('cpcmd --help and cpcmd help list every command, with the global flags', async () => {
    const { commands } = await import('@scoped/cli');
    for (const args of [['--help'], ['help'], ['-h']]) {
      const r = await cpcmd(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('$ cpcmd [-o cli|json|yaml] COMMAND [ARGS...] [FLAGS]');
      const listed = r.stdout.slice(r.stdout.indexOf('\nCOMMANDS\n'));
      for (const c of commands) {
        if (c.hidden) expect(listed, args.join(' ')).not.toMatch(new RegExp(`^ {2}${c.id} `, 'm'));
        else expect(listed, args.join(' ')).toMatch(new RegExp(`^ {2}${c.id} +\\S`, 'm'));
      }
      expect(r.stdout).toMatch(/^GLOBAL FLAGS\n {2}-o, --output=cli\|json\|yaml /m);
    }
  });

  it('cpcmd help scope:set and scope:set --help show NAME VALUE...; converge shows [UNIT...]', async () => {
    for (const args of [
      ['help', 'scope:set'],
      ['scope:set', '--help'],
      ['-o', 'json', 'help', 'scope:set'],
    ]) {
      const r = await cpcmd(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout, args.join(' ')).toMatch(/^ {2}\$ cpcmd scope:set NAME VALUE\.\.\. /m);
      expect(r.stdout).toMatch(/^ {2}VALUE\.\.\. +the value, one shell word per argument/m);
      expect(r.stdout).toMatch(/^ {2}--dry-run +show the plan/m);
      expect(r.stdout).toMatch(/^GLOBAL FLAGS$/m);
    }
    const converge = await cpcmd(['help', 'converge']);
    expect(converge.stdout).toMatch(/^ {2}\$ cpcmd converge \[UNIT\.\.\.\] /m);
    expect(converge.stdout).toMatch(/^ {2}\[UNIT\.\.\.\] +units such as net\/hostname/m);
    const get = await cpcmd(['scope:get', '-h']);
    expect(get.stdout).toMatch(/^ {2}\$ cpcmd scope:get NAME \[ARG\.\.\.\] /m);
    expect(get.stdout).toContain('$ cpcmd -o json scope:get net.hostname');
  });

  it('scope:set NAME --help (and help scope:set NAME) add that scope: its summary, usage and every example', async () => {
    const scopes = JSON.parse(await readFile(path.join(CLI, 'scopes.json'), 'utf8')) as { name: string; summary: string; usage: string; examples: string[] }[];
    expect(scopes.map((s) => s.name)).toEqual(
      expect.arrayContaining(['mail.transport', 'mail.sender-ip', 'mail.srs', 'mail.submission', 'mail.tls-policy', 'mail.deliverability', 'cp.config']),
    );
    for (const s of scopes) {
      expect(s.examples.length, s.name).toBeGreaterThan(0);
      const r = await cpcmd(['scope:set', s.name, '--help']);
      expect(r.code, r.stderr).toBe(0);
      const section = r.stdout.slice(r.stdout.indexOf(`\nSCOPE ${s.name}\n`));
      expect(section, s.name).toContain(s.summary);
      expect(section).toContain(`$ cpcmd scope:set ${s.name} ${s.usage}`);
      for (const e of s.examples) expect(section).toContain(`$ ${e}`);
    }
    const viaHelp = await cpcmd(['help', 'scope:get', 'mail.deliverability']);
    expect(viaHelp.stdout).toMatch(/^SCOPE mail\.deliverability\n/m);
    expect(viaHelp.stdout).toContain('$ cpcmd scope:get mail.deliverability');
    // Without a scope, or with a name no first-party plugin has, only the command's help.
    expect((await cpcmd(['scope:set', '--help'])).stdout).not.toMatch(/^SCOPE /m);
    expect((await cpcmd(['scope:set', 'no.such-scope', '--help'])).stdout).not.toMatch(/^SCOPE /m);
  });

  it('cpcmd -v and --version print the version', async () => {
    const { version } = JSON.parse(await readFile(path.join(CLI, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['-v', '--version']) {
      const r = await cpcmd([flag]);
      expect(r, flag).toMatchObject({ code: 0, stderr: '' });
      expect(r.stdout).toMatch(new RegExp(`^@scoped/cli/${version.replaceAll('.', '\\.')} `));
    }
  });
});

describe('oclif.manifest.json', () => {
  let copy: string;
  beforeAll(async () => {
    // A copy of the built package, to make its files stale without touching the real one.
    copy = await mkdtemp(path.join(tmpdir(), 'cpcmd-manifest-'));
    for (const f of ['package.json', 'dist', 'scripts', 'oclif.manifest.json', 'scopes.json'])
      await cp(path.join(CLI, f), path.join(copy, f), { recursive: true });
    await symlink(path.join(REPO, 'node_modules'), path.join(copy, 'node_modules'));
  });
  afterAll(async () => {
    if (copy) await rm(copy, { recursive: true, force: true });
  });
  const check = (dir: string) => run(process.execPath, [path.join(dir, 'scripts/check-manifest.mjs')], { cwd: dir });

  it('is built with every command and its variadic arguments, and the check passes on it', async () => {
    const manifest = JSON.parse(await readFile(path.join(CLI, 'oclif.manifest.json'), 'utf8')) as {
      commands: Record<string, { args: Record<string, { multiple?: boolean; required?: boolean }> }>;
    };
    const { commands } = await import('@scoped/cli');
    expect(Object.keys(manifest.commands).sort()).toEqual(commands.map((c) => c.id).sort());
    expect(manifest.commands['scope:set']!.args).toMatchObject({ name: { required: true }, value: { multiple: true, required: true } });
    expect(manifest.commands.converge!.args).toMatchObject({ unit: { multiple: true } });
    const r = await check(CLI);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('the check fails on a stale manifest and on missing scope names, saying how to rebuild', async () => {
    const file = path.join(copy, 'oclif.manifest.json');
    const manifest = JSON.parse(await readFile(file, 'utf8')) as { commands: Record<string, unknown> };
    delete manifest.commands.converge;
    await writeFile(file, JSON.stringify(manifest, null, 2));
    await rm(path.join(copy, 'scopes.json'));
    const r = await check(copy);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'oclif.manifest.json is stale: it does not match the commands declared in src/specs.ts (as built in dist)\nscopes.json is missing\nrun npm run build -w @scoped/cli to write it again\n',
    );
  });
});
