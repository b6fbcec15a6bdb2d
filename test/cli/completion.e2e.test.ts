/**
 * Shell completion as a user sets it up: `cpcmd autocomplete bash` (@oclif/plugin-autocomplete)
 * writes the bash and zsh functions, with every command and its flags, and cpcmd adds scope
 * names for the commands that take a scope NAME: the daemon's when it answers, else the
 * first-party names written at build. The bash function runs here in a real bash.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CPCMD_BIN, REPO, cleanEnv, run } from '../helpers/proc.js';
import { Recorder } from './recorder.js';

/** What the build wrote for completion without a daemon. */
const builtNames = async (): Promise<string[]> =>
  (JSON.parse(await readFile(path.join(REPO, 'packages/cli/scopes.json'), 'utf8')) as { name: string }[]).map((s) => s.name);

describe('shell completion', () => {
  let cache: string;
  let rec: Recorder;
  let bashFile: string;
  let zshFile: string;
  const cpcmdPath = path.join(REPO, 'node_modules/.bin/cpcmd');

  beforeAll(async () => {
    cache = await mkdtemp(path.join(tmpdir(), 'cpcmd-complete-'));
    rec = await Recorder.start();
    const r = await run(process.execPath, [CPCMD_BIN, 'autocomplete', 'bash'], { env: cleanEnv({ XDG_CACHE_HOME: cache }) });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('printf "$(cpcmd autocomplete:script bash)" >> ~/.bashrc');
    bashFile = path.join(cache, 'cpcmd/autocomplete/functions/bash/cpcmd.bash');
    zshFile = path.join(cache, 'cpcmd/autocomplete/functions/zsh/_cpcmd');
  });
  afterAll(async () => {
    await rec?.stop();
    if (cache) await rm(cache, { recursive: true, force: true });
  });

  /** Complete the line as bash would at its end; COMPREPLY, one per line. */
  async function complete(line: string, env: Record<string, string>): Promise<string[]> {
    const script = `source "$1"; COMP_LINE="$2"; COMP_POINT=\${#COMP_LINE}; read -ra COMP_WORDS <<< "$COMP_LINE"; COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 )); _cpcmd_autocomplete_scopes; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = await run('bash', ['--norc', '--noprofile', '-c', script, 'bash', bashFile, line], { env: cleanEnv(env), timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.split('\n').filter(Boolean).sort();
  }

  it('writes bash and zsh functions that list every command and its flags', async () => {
    const bash = await readFile(bashFile, 'utf8');
    const zsh = await readFile(zshFile, 'utf8');
    const { commands } = await import('@scoped/cli');
    for (const c of commands.filter((c) => !c.hidden)) {
      expect(bash).toMatch(new RegExp(`^${c.id} .*--output --json --socket --url$`, 'm'));
      expect(zsh).toContain(`"${c.id.replace(':', '\\:')}:`);
    }
    expect(bash).toMatch(/^scope:set --dry-run --converge --if-revision --wait --verify /m);
    expect(bash).not.toContain('autocomplete:scopes --');
    // Scope names are offered for the commands taking a scope NAME, in both shells.
    expect(bash).toMatch(/^\s+scope:info\|scope:get\|scope:set\|scope:reset\|scope:check\)$/m);
    expect(bash).toContain('complete -o default -F _cpcmd_autocomplete_scopes cpcmd');
    expect(zsh).toMatch(/^\s+scope:info\|scope:get\|scope:set\|scope:reset\|scope:check\)$/m);
    expect(zsh).toMatch(/^\s+_cpcmd_scope_args$/m);
  });

  it('completes scope names from the daemon when it answers', async () => {
    const env = { SCOPED_SOCKET: rec.socket };
    expect(await complete(`${cpcmdPath} scope:get `, env)).toEqual(['mail.smart-host', 'net.hostname', 'recorder.only-from-daemon']);
    expect(await complete(`${cpcmdPath} scope:set rec`, env)).toEqual(['recorder.only-from-daemon']);
    // ApisCP's order: flags before the command are skipped.
    expect(await complete(`${cpcmdPath} -o json scope:info ma`, env)).toEqual(['mail.smart-host']);
    expect(rec.requests.map((q) => (q.body as { method: string }).method)).toEqual(['scope.list', 'scope.list', 'scope.list']);
  });

  it('completes scope names from the list written at build without a daemon', async () => {
    const built = await builtNames();
    expect(built).toEqual(expect.arrayContaining(['mail.smart-host', 'net.hostname']));
    const env = { SCOPED_SOCKET: path.join(cache, 'no-daemon.sock') };
    expect(await complete(`${cpcmdPath} scope:check `, env)).toEqual([...built].sort());
    expect(await complete(`${cpcmdPath} scope:reset net.`, env)).toEqual(built.filter((n) => n.startsWith('net.')).sort());
  });

  it('offers no scope names after the NAME, nor for commands that take none', async () => {
    const env = { SCOPED_SOCKET: rec.socket };
    rec.clear();
    // Past the NAME (or for converge) it is the plugin's completion: no scope names, no call to the daemon.
    const script = `source "$1"; _cpcmd_autocomplete() { COMPREPLY=(plugin); }; COMP_LINE="$2"; COMP_POINT=\${#COMP_LINE}; _cpcmd_autocomplete_scopes; printf '%s\\n' "\${COMPREPLY[@]}"`;
    for (const line of [`${cpcmdPath} scope:get net.hostname `, `${cpcmdPath} converge `, `${cpcmdPath} scope:set --`]) {
      const r = await run('bash', ['--norc', '--noprofile', '-c', script, 'bash', bashFile, line], { env: cleanEnv(env) });
      expect(r.stdout, line).toBe('plugin\n');
    }
    expect(rec.requests).toEqual([]);
  });

  it('prints the scope names for the shell with cpcmd autocomplete:scopes, with or without a daemon', async () => {
    const withDaemon = await run(process.execPath, [CPCMD_BIN, 'autocomplete:scopes'], { env: cleanEnv({ SCOPED_SOCKET: rec.socket }) });
    expect(withDaemon).toMatchObject({ code: 0, stdout: 'mail.smart-host\nnet.hostname\nrecorder.only-from-daemon\n', stderr: '' });
    const without = await run(process.execPath, [CPCMD_BIN, 'autocomplete:scopes', '--socket', path.join(cache, 'none.sock')], { env: cleanEnv() });
    expect(without).toMatchObject({ code: 0, stdout: `${(await builtNames()).join('\n')}\n`, stderr: '' });
  });
});
