/**
 * cpcmd's two paths are one CLI: every command line here runs through the fast path and
 * through oclif (CPCMD_OCLIF=1), each against its own recording JSON-RPC server, and both must
 * give the same exit code, stdout, stderr and the same requests (method, params, the listener
 * they reached and the token they carried). Each line also checks what a user should see.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CPCMD_BIN, type RunResult, cleanEnv, run } from '../helpers/proc.js';
import { Recorder } from './recorder.js';

interface Want {
  code: number;
  stdout?: string | RegExp;
  stderr?: string | RegExp;
  /** The requests, in order: method and params, and where they went (default the socket). */
  requests?: { method: string; params?: unknown; via?: 'socket' | 'http'; authorization?: string }[];
}

interface Case {
  /** The words after cpcmd; a function for words that name the recorder. */
  argv: string[] | ((r: Recorder) => string[]);
  /** The environment on top of a clean one; default SCOPED_SOCKET pointing at the recorder. */
  env?: (r: Recorder) => Record<string, string>;
  want: Want;
}

const socketEnv = (r: Recorder) => ({ SCOPED_SOCKET: r.socket });
const USAGE = /^cpcmd: [^\n]+\nhint: [^\n]+\n$/;
const JOB = 'job-0123456789ab';
/** cpcmd waits for the job's end in one job.get (waitMs: what is left of the 300 ms before progress shows). */
const waitJob = { method: 'job.get', params: { id: JOB, waitMs: expect.any(Number) } };
const setJob = (params: unknown) => [{ method: 'scope.set', params }, waitJob];

const cases: Case[] = [
  // ApisCP's order, and every spelling of the output flag, before and after the command.
  {
    argv: ['scope:get', 'net.hostname'],
    want: { code: 0, stdout: 'mail.example.com\n', stderr: '', requests: [{ method: 'scope.get', params: { name: 'net.hostname' } }] },
  },
  { argv: ['-o', 'json', 'scope:get', 'net.hostname'], want: { code: 0, stdout: '"mail.example.com"\n', stderr: '' } },
  { argv: ['scope:get', 'net.hostname', '-o', 'json'], want: { code: 0, stdout: '"mail.example.com"\n' } },
  { argv: ['scope:get', '-o', 'json', 'net.hostname'], want: { code: 0, stdout: '"mail.example.com"\n' } },
  { argv: ['-o=json', 'audit:list'], want: { code: 0, stdout: /^\[\n {2}\{\n {4}"seq": 1,/, requests: [{ method: 'audit.list', params: {} }] } },
  { argv: ['audit:list', '-o=json'], want: { code: 0, stdout: /^\[\n {2}\{\n {4}"seq": 1,/ } },
  { argv: ['-ojson', 'scope:list'], want: { code: 0, stdout: /"name": "net.hostname"/ } },
  { argv: ['--output', 'json', 'scope:list'], want: { code: 0, stdout: /"name": "net.hostname"/ } },
  { argv: ['--output=yaml', 'scope:list'], want: { code: 0, stdout: /^- name: mail.smart-host\n {2}summary: /m } },
  { argv: ['-o', 'yaml', 'scope:list'], want: { code: 0, stdout: /^- name: net.hostname$/m, requests: [{ method: 'scope.list', params: {} }] } },
  { argv: ['scope:list', '-o', 'yaml'], want: { code: 0, stdout: /^- name: net.hostname$/m } },
  { argv: ['--json', 'scope:list'], want: { code: 0, stdout: /^\[\n {2}\{\n {4}"name": "mail.smart-host"/ } },
  { argv: ['scope:list', '--json'], want: { code: 0, stdout: /^\[\n/ } },
  { argv: ['-o', 'cli', 'scope:list'], want: { code: 0, stdout: /^net\.hostname {2,}the server's hostname$/m } },
  { argv: ['scope:list', 'mail.*'], want: { code: 0, requests: [{ method: 'scope.list', params: { glob: 'mail.*' } }] } },
  {
    argv: ['--json', 'scope:get', 'cp.bootstrapper', 'system_hostname'],
    want: {
      code: 0,
      stdout: /"system_hostname": "mail.example.com"/,
      requests: [{ method: 'scope.get', params: { name: 'cp.bootstrapper', args: ['system_hostname'], words: ['system_hostname'] } }],
    },
  },
  { argv: ['scope:get', 'net.hostname', '--revision'], want: { code: 0, stdout: '3\n' } },
  { argv: ['-o', 'yaml', 'var:list'], want: { code: 0, stdout: /^- name: system_hostname$/m, requests: [{ method: 'var.list', params: {} }] } },
  { argv: ['token:list', '--json'], want: { code: 0, stdout: /"name": "ci"/ } },
  { argv: ['scope:info', 'net.hostname'], want: { code: 0, stdout: /^usage: cpcmd scope:set net.hostname HOSTNAME$/m } },
  {
    argv: ['plugin:list', '-o', 'cli'],
    want: { code: 0, stdout: /^@scoped\/plugin-net@0\.1\.0 +loaded +net\.hostname$/m, requests: [{ method: 'daemon.status', params: {} }] },
  },

  // Booleans: bare, --no-, =true and =false, and a value that is neither.
  {
    argv: ['scope:set', 'net.hostname', 'mail.example.com', '--dry-run'],
    want: {
      code: 0,
      stdout: /^dry run: net.hostname would make 1 change, nothing written$/m,
      requests: [{ method: 'scope.set', params: { name: 'net.hostname', args: ['mail.example.com'], words: ['mail.example.com'], dryRun: true } }],
    },
  },
  {
    argv: ['scope:set', 'net.hostname', 'mail.example.com', '--dry-run=true'],
    want: {
      code: 0,
      requests: [{ method: 'scope.set', params: { name: 'net.hostname', args: ['mail.example.com'], words: ['mail.example.com'], dryRun: true } }],
    },
  },
  {
    argv: ['scope:set', 'net.hostname', 'mail.example.com', '--dry-run=false'],
    want: {
      code: 0,
      stdout: /^net.hostname: applied \(revision 4\)$/m,
      requests: setJob({ name: 'net.hostname', args: ['mail.example.com'], words: ['mail.example.com'], async: true }),
    },
  },
  { argv: ['scope:set', 'net.hostname', 'mail.example.com', '--dry-run=maybe'], want: { code: 2, stdout: '', stderr: USAGE, requests: [] } },
  {
    argv: ['--dry-run', 'scope:set', 'net.hostname', 'mail.example.com'],
    want: {
      code: 0,
      requests: [{ method: 'scope.set', params: { name: 'net.hostname', args: ['mail.example.com'], words: ['mail.example.com'], dryRun: true } }],
    },
  },
  {
    argv: ['scope:set', 'net.hostname', 'mail.example.com', '--no-wait'],
    want: {
      code: 0,
      stdout: `${JOB}\n`,
      requests: [{ method: 'scope.set', params: { name: 'net.hostname', args: ['mail.example.com'], words: ['mail.example.com'], async: true } }],
    },
  },
  { argv: ['scope:set', 'net.hostname', 'mail.example.com', '--wait=false'], want: { code: 0, stdout: `${JOB}\n` } },
  {
    argv: ['scope:set', 'cp.bootstrapper', 'system_hostname', 'x.example.com', '--no-converge'],
    want: {
      code: 0,
      requests: setJob({
        name: 'cp.bootstrapper',
        args: ['system_hostname', 'x.example.com'],
        words: ['system_hostname', 'x.example.com'],
        converge: false,
        async: true,
      }),
    },
  },
  {
    argv: ['scope:set', 'net.hostname', 'mail.example.com', '--no-dry-run'],
    want: { code: 2, stderr: /^cpcmd: unknown flag --no-dry-run for scope:set\n/, requests: [] },
  },
  {
    argv: ['scope:set', 'net.hostname', 'mail.example.com', '--if-revision', '3'],
    want: { code: 0, requests: setJob({ name: 'net.hostname', args: ['mail.example.com'], words: ['mail.example.com'], ifRevision: 3, async: true }) },
  },
  {
    argv: ['scope:set', 'net.hostname', 'mail.example.com', '--if-revision=3'],
    want: { code: 0, requests: setJob({ name: 'net.hostname', args: ['mail.example.com'], words: ['mail.example.com'], ifRevision: 3, async: true }) },
  },
  {
    argv: ['scope:set', 'net.hostname', 'mail.example.com', '--if-revision=abc'],
    want: { code: 2, stderr: /^cpcmd: --if-revision takes a whole number, not abc\n/, requests: [] },
  },

  // Arguments: after --, negative numbers, variadic ones.
  { argv: ['scope:set', 'net.hostname', '--', '-x'], want: { code: 0, requests: setJob({ name: 'net.hostname', args: ['-x'], words: ['-x'], async: true }) } },
  {
    argv: ['scope:set', 'net.hostname', '-1', '--dry-run'],
    want: { code: 0, requests: [{ method: 'scope.set', params: { name: 'net.hostname', args: [-1], words: ['-1'], dryRun: true } }] },
  },
  { argv: ['converge'], want: { code: 0, stdout: /^all units: applied/m, requests: [{ method: 'unit.converge', params: { async: true } }, waitJob] } },
  {
    argv: ['converge', 'net/hostname', 'postfix/main', '--dry-run'],
    want: { code: 0, requests: [{ method: 'unit.converge', params: { units: ['net/hostname', 'postfix/main'], dryRun: true } }] },
  },
  {
    argv: ['scope:reset', 'net.hostname', '--dry-run'],
    want: { code: 0, requests: [{ method: 'scope.reset', params: { name: 'net.hostname', dryRun: true } }] },
  },
  { argv: ['scope:check'], want: { code: 0, stdout: 'ok: no drift\n' } },
  { argv: ['-o', 'json', 'scope:check', 'mail.smart-host'], want: { code: 3, stdout: /"ok": false/ } },
  { argv: ['audit:list', '--limit', '5', '--since', '2h'], want: { code: 0, requests: [{ method: 'audit.list', params: { since: '2h', limit: 5 } }] } },

  // Usage errors: one line and a hint, exit 2, nothing sent.
  {
    argv: ['scope:get'],
    want: {
      code: 2,
      stdout: '',
      stderr: 'cpcmd: scope:get needs NAME\nhint: usage: cpcmd scope:get NAME [ARG...] [FLAGS] (cpcmd help scope:get explains it)\n',
      requests: [],
    },
  },
  {
    argv: ['scope:set', 'net.hostname'],
    want: { code: 2, stderr: /^cpcmd: scope:set needs VALUE\nhint: usage: cpcmd scope:set NAME VALUE\.\.\. /, requests: [] },
  },
  { argv: ['scope:info', 'a', 'b'], want: { code: 2, stderr: /^cpcmd: scope:info takes at most 1 argument; got 2\n/, requests: [] } },
  { argv: ['scope:get', 'net.hostname', '--bogus'], want: { code: 2, stderr: /^cpcmd: unknown flag --bogus for scope:get\n/, requests: [] } },
  { argv: ['--bogus', 'scope:get', 'net.hostname'], want: { code: 2, stderr: /^cpcmd: unknown flag --bogus for scope:get\n/, requests: [] } },
  { argv: ['scope:get', 'net.hostname', '-o', 'xml'], want: { code: 2, stderr: /^cpcmd: -o takes one of cli, json, yaml, not xml\n/, requests: [] } },
  { argv: ['scope:get', 'net.hostname', '-o'], want: { code: 2, stderr: /^cpcmd: -o needs a value\n/, requests: [] } },
  { argv: ['scope:set', 'net.hostname', '[relay]:587'], want: { code: 2, stdout: '', requests: [] } },
  { argv: ['scope:lst'], want: { code: 2, stdout: '', stderr: 'cpcmd: unknown command scope:lst\nhint: did you mean scope:list?\n', requests: [] } },
  { argv: ['frobnicate', 'x'], want: { code: 2, stderr: 'cpcmd: unknown command frobnicate\nhint: cpcmd --help lists the commands\n', requests: [] } },
  { argv: ['-o', 'json'], want: { code: 2, stderr: /^cpcmd: no command after -o\n/, requests: [] } },

  // Where the daemon is: a flag beats any variable; SCOPED_URL beats SCOPED_SOCKET.
  {
    argv: ['scope:list'],
    env: (r) => ({ SCOPED_SOCKET: r.socket, SCOPED_URL: r.url, SCOPED_TOKEN: 'tok-secret' }),
    want: { code: 0, requests: [{ method: 'scope.list', params: {}, via: 'http', authorization: 'Bearer tok-secret' }] },
  },
  {
    argv: (r) => ['scope:list', '--socket', r.socket],
    env: (r) => ({ SCOPED_URL: r.url }),
    want: { code: 0, requests: [{ method: 'scope.list', params: {}, via: 'socket' }] },
  },
  {
    argv: (r) => ['--socket', r.socket, 'scope:list'],
    env: (r) => ({ SCOPED_SOCKET: `${r.dir}/elsewhere.sock`, SCOPED_URL: r.url }),
    want: { code: 0, requests: [{ method: 'scope.list', params: {}, via: 'socket' }] },
  },
  {
    argv: (r) => ['scope:list', `--url=${r.url}`],
    env: (r) => ({ SCOPED_SOCKET: r.socket }),
    want: { code: 0, requests: [{ method: 'scope.list', params: {}, via: 'http' }] },
  },
  {
    argv: ['scope:list'],
    env: (r) => ({ SCOPED_SOCKET: r.socket, SCOPED_URL: '' }),
    want: { code: 0, requests: [{ method: 'scope.list', params: {}, via: 'socket' }] },
  },
  { argv: (r) => ['scope:list', '--socket', r.socket, '--url', r.url], want: { code: 2, stderr: /^cpcmd: --socket and --url name two daemons/, requests: [] } },
  {
    argv: ['scope:get', 'net.hostname'],
    env: (r) => ({ SCOPED_SOCKET: `${r.dir}/missing.sock` }),
    want: { code: 4, stdout: '', stderr: /^cpcmd: cannot reach scoped at the socket <dir>\/missing\.sock/, requests: [] },
  },

  // Help and version are oclif's on both paths.
  { argv: ['-v'], want: { code: 0, stdout: /^@scoped\/cli\/\d+\.\d+\.\d+ /, requests: [] } },
  { argv: ['-o', 'json', '--version'], want: { code: 0, stdout: /^@scoped\/cli\// } },
  { argv: ['scope:set', '--help'], want: { code: 0, stdout: /^ {2}\$ cpcmd scope:set NAME VALUE\.\.\./m } },
];

/** What a run left, with the recorder's own paths and port replaced so both paths compare. */
function seen(r: RunResult, rec: Recorder) {
  const norm = (s: string) => s.split(rec.dir).join('<dir>').split(rec.url).join('<url>');
  return {
    code: r.code,
    stdout: norm(r.stdout),
    stderr: norm(r.stderr),
    requests: rec.requests.map((q) => ({ via: q.via, authorization: q.authorization, body: q.body })),
  };
}

/**
 * job.get's waitMs is what is left of the 300 ms before progress shows, so it depends on how
 * long the call took: both paths must send one in (0, 300], and are otherwise compared as sent.
 */
function timeless(r: ReturnType<typeof seen>) {
  return {
    ...r,
    requests: r.requests.map((q) => {
      const body = q.body as { method?: string; params?: { waitMs?: unknown } };
      if (body?.method !== 'job.get' || body.params?.waitMs === undefined) return q;
      const ms = body.params.waitMs;
      expect(typeof ms === 'number' && ms > 0 && ms <= 300, `job.get waitMs ${String(ms)}`).toBe(true);
      return { ...q, body: { ...body, params: { ...body.params, waitMs: '(0, 300]' } } };
    }),
  };
}

describe('the fast path and the oclif path are one CLI', () => {
  let fast: Recorder;
  let oclif: Recorder;
  beforeAll(async () => {
    [fast, oclif] = await Promise.all([Recorder.start(), Recorder.start()]);
  });
  afterAll(async () => {
    await Promise.all([fast?.stop(), oclif?.stop()]);
  });

  it('runs at least 40 command lines', () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
  });

  for (const c of cases) {
    const shown = { socket: '<socket>', url: '<url>', dir: '<dir>' } as Recorder;
    const env = c.env
      ? `${Object.entries(c.env(shown))
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')} `
      : '';
    const label = `${env}cpcmd ${(typeof c.argv === 'function' ? c.argv(shown) : c.argv).join(' ')}`;
    it(label, async () => {
      const go = async (rec: Recorder, viaOclif: boolean) => {
        rec.clear();
        const argv = typeof c.argv === 'function' ? c.argv(rec) : c.argv;
        const env = cleanEnv({ ...(c.env ?? socketEnv)(rec), ...(viaOclif ? { CPCMD_OCLIF: '1' } : {}) });
        return seen(await run(process.execPath, [CPCMD_BIN, ...argv], { env, timeoutMs: 30_000 }), rec);
      };
      const [a, b] = await Promise.all([go(fast, false), go(oclif, true)]);
      expect(timeless(b), 'the oclif path differs from the fast path').toEqual(timeless(a));
      const w = c.want;
      expect(a.code, a.stderr).toBe(w.code);
      for (const [name, want] of [['stdout', w.stdout] as const, ['stderr', w.stderr] as const]) {
        if (typeof want === 'string') expect(a[name], name).toBe(want);
        else if (want) expect(a[name], name).toMatch(want);
      }
      if (w.requests) {
        const sent = a.requests.map((q) => ({
          method: (q.body as { method: string }).method,
          params: (q.body as { params: unknown }).params,
          via: q.via,
          authorization: q.authorization,
        }));
        expect(sent, 'requests').toEqual(w.requests.map((q) => ({ via: 'socket', authorization: undefined, ...q })));
      }
    });
  }
});
