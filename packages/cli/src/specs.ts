import type { Client } from '@scoped/client/light';
import type { ApplyResult, Drift, Pending, RecoveryStatus } from '@scoped/protocol';
import { CliError, ExitCodes } from './errors.js';
import { formatWord, readArgs } from './grammar.js';
import { waitForJob } from './jobs.js';
import { columns, renderPlain } from './render.js';
import { escapeControls as safe } from './terminal.js';

/** A flag, described once for both the oclif commands and the fast path. */
export interface FlagSpec {
  type: 'boolean' | 'string' | 'integer';
  char?: string;
  description: string;
  options?: readonly string[];
  env?: string;
  /** Booleans: also accept --no-NAME. */
  allowNo?: boolean;
}

export interface ArgSpec {
  /** Shown upper-cased in usage and help: `NAME`, `VALUE...`. */
  name: string;
  description: string;
  required?: boolean;
  /** Takes every remaining word; at most one, the last. */
  variadic?: boolean;
  /** Shell completion offers the scope names here. */
  completion?: 'scope';
}

/** What a command produced: data for -o json|yaml, text for -o cli, and its exit code. */
export interface Outcome {
  data: unknown;
  text?: string;
  /** Printed on stderr in cli form (warnings such as drift). */
  notice?: string;
  exitCode?: number;
}

/**
 * One command, declared once. From it come the oclif command class (help, `cpcmd help`,
 * oclif.manifest.json, shell completion) and the fast path's parsing and checks.
 */
export interface CommandSpec {
  id: string;
  summary: string;
  description?: string;
  examples: string[];
  args: ArgSpec[];
  flags: Record<string, FlagSpec>;
  /** Left out of help and completion (a helper for the shell). */
  hidden?: boolean;
  run(input: { args: string[]; flags: Record<string, unknown> }, client: Client): Promise<Outcome>;
}

/**
 * Flags every command takes, before or after the command (`cpcmd -o json scope:list`).
 * Where the daemon is: a flag beats any variable (--socket or --url, not both); without
 * one, SCOPED_URL beats SCOPED_SOCKET; the default is the socket.
 */
export const globalFlags: Record<string, FlagSpec> = {
  output: { type: 'string', char: 'o', description: "output format, as ApisCP's cpcmd -o", options: ['cli', 'json', 'yaml'] },
  json: { type: 'boolean', description: 'the same as -o json' },
  socket: { type: 'string', description: "the daemon's unix socket (default /run/scoped/scoped.sock); a flag beats both variables", env: 'SCOPED_SOCKET' },
  url: {
    type: 'string',
    description: 'reach the daemon at http://HOST:PORT/rpc or ws://HOST:PORT/rpc, with the token in SCOPED_TOKEN; SCOPED_URL beats SCOPED_SOCKET',
    env: 'SCOPED_URL',
  },
};

const dryRun: FlagSpec = { type: 'boolean', description: 'show the plan and write nothing' };
const wait: FlagSpec = { type: 'boolean', allowNo: true, description: 'wait for the change to finish (default); --no-wait prints the job id and returns' };

/**
 * Run a mutation as a job and wait for it (progress shows when it takes a while), or with
 * --no-wait answer with the job id at once. A dry run is answered directly.
 */
async function viaJob(
  client: Client,
  start: () => Promise<ApplyResult | { status: 'queued'; job: string }>,
  flags: Record<string, unknown>,
  what: string,
): Promise<Outcome> {
  const r = await start();
  if (!('job' in r)) return { data: r, text: applyText(r, what) };
  if (flags.wait === false) return { data: r, text: safe(r.job) };
  const done = await waitForJob(client, r.job);
  return { data: done, text: applyText(done, what) };
}

/** A stuck recovery as scope:check prints it: what, since when, why, and what to do. */
const recoveryLines = (r: RecoveryStatus): string =>
  `${safe(`recovery stuck: ${r.action} ${r.target} (started ${r.startedAt} by ${r.actor}) has not been finished or undone since ${r.since ?? r.startedAt}${r.error ? `: ${r.error}` : ''}`)}\n${safe(`hint: ${r.hint}`)}`;

const driftLines = (drift: readonly Drift[]): string =>
  drift
    .map((d) => safe(`drift: ${[d.scope, d.var].filter(Boolean).join(' ')} ${d.unit} ${d.target}: expected ${show(d.expected)}, found ${show(d.actual)}`))
    .join('\n');

/** Defaults not yet applied, as scope:check prints them on stderr: what the var keeps, its default, the command that applies it. */
const pendingLines = (pending: readonly Pending[]): string =>
  pending
    .map((p) =>
      safe(
        `not yet applied: ${[p.scope, p.var].filter(Boolean).join(' ')} keeps what the system had, ${JSON.stringify(p.value)}; its default ${JSON.stringify(p.default)} applies with: ${p.apply}`,
      ),
    )
    .join('\n');

const show = (v: string | null): string => (v === null ? '(unset)' : JSON.stringify(v));

function applyText(r: ApplyResult, what: string): string {
  const plan = r.plan.map((c) => `  ${safe(c.unit)}: ${safe(c.summary)}`);
  const shown = safe(what);
  if (r.status === 'planned')
    return [`dry run: ${shown} would make ${r.plan.length} change${r.plan.length === 1 ? '' : 's'}, nothing written`, ...plan].join('\n');
  if (r.status === 'unchanged') return `${shown}: unchanged`;
  return [`${shown}: applied (revision ${r.revision})`, ...plan].join('\n');
}

export const commands: CommandSpec[] = [
  {
    id: 'scope:list',
    summary: 'List the scopes',
    description: 'Lists every scope with its summary. A GLOB such as mail.* narrows the list.',
    examples: ['cpcmd scope:list', "cpcmd scope:list 'mail.*'", 'cpcmd -o yaml scope:list'],
    args: [{ name: 'glob', description: 'only scopes matching this glob' }],
    flags: {},
    async run({ args }, client) {
      const r = await client.call('scope.list', args[0] ? { glob: args[0] } : {});
      return { data: r.scopes, text: columns(r.scopes.map((s) => [s.name, s.summary] as const)) };
    },
  },
  {
    id: 'scope:info',
    summary: 'Describe a scope: what it does, its arguments and examples',
    examples: ['cpcmd scope:info mail.smart-host'],
    args: [{ name: 'name', description: 'the scope', required: true, completion: 'scope' }],
    flags: {},
    async run({ args }, client) {
      const r = await client.call('scope.info', { name: args[0]! });
      // A read-only scope (mail.deliverability) has no set among its examples: its usage is a get's.
      const verb = r.examples.some((e) => e.includes(`scope:set ${r.name} `)) ? 'scope:set' : 'scope:get';
      const text = [
        `${safe(r.name)}: ${safe(r.summary)}`,
        '',
        `usage: cpcmd ${verb} ${safe(r.name)} ${safe(r.usage)}`,
        '',
        safe(r.help),
        '',
        'examples:',
        ...r.examples.map((e) => `  ${safe(e)}`),
        ...(r.vars.length ? ['', `vars: ${safe(r.vars.join(', '))}`] : []),
        ...(r.units.length ? [`units: ${safe(r.units.join(', '))}`] : []),
      ].join('\n');
      return { data: r, text };
    },
  },
  {
    id: 'scope:get',
    summary: 'Read a scope as the system has it now',
    description:
      'Prints the value; a scalar prints alone on its line. Secrets come back redacted. Drift between the stored vars and the system is reported on stderr.',
    examples: [
      'cpcmd scope:get net.hostname',
      'cpcmd -o json scope:get net.hostname',
      'cpcmd scope:get cp.bootstrapper',
      'cpcmd scope:get cp.bootstrapper system_hostname',
      'rev=$(cpcmd scope:get mail.smart-host --revision); cpcmd scope:set mail.smart-host false --if-revision "$rev"',
    ],
    args: [
      { name: 'name', description: 'the scope', required: true, completion: 'scope' },
      { name: 'arg', description: 'arguments that narrow the value (cp.bootstrapper: a var name)', variadic: true },
    ],
    flags: { revision: { type: 'boolean', description: "print the scope's revision instead of its value (for scope:set --if-revision)" } },
    async run({ args, flags }, client) {
      const [name, ...rest] = args;
      // Each value, and beside it the text as typed, for a scope that wants a string (1.50 stays 1.50).
      const typed = readArgs(rest);
      const r = await client.call('scope.get', rest.length ? { name: name!, args: typed.args as never, words: typed.words } : { name: name! });
      const outcome: Outcome = flags.revision ? { data: r.revision, text: String(r.revision) } : { data: r.value, text: renderPlain(r.value) };
      if (r.drift.length) outcome.notice = `${driftLines(r.drift)}\n(cpcmd converge puts it back; cpcmd scope:check shows all drift)`;
      return outcome;
    },
  },
  {
    id: 'scope:set',
    summary: 'Set a scope and converge the system to it',
    description:
      "Each word after NAME is one argument, read with ApisCP's grammar: null, numbers and true/false are typed; '…' or \"…\" " +
      'inside the word keeps it a string; [a,b] is a list and [k:v] a map. Quote a bracketed host twice: "\'[relay]:587\'".',
    examples: [
      'cpcmd scope:set net.hostname mail.example.com',
      'cpcmd scope:set net.hostname mail.example.com --dry-run',
      'cpcmd scope:set cp.bootstrapper system_hostname mail.example.com --no-converge',
    ],
    args: [
      { name: 'name', description: 'the scope', required: true, completion: 'scope' },
      {
        name: 'value',
        description: "the value, one shell word per argument, as the scope's usage says (cpcmd scope:info NAME)",
        required: true,
        variadic: true,
      },
    ],
    flags: {
      'dry-run': dryRun,
      converge: { type: 'boolean', description: 'converge the units after storing (cp.bootstrapper: --no-converge only stores)', allowNo: true },
      'if-revision': { type: 'integer', description: 'refuse unless the scope is still at this revision (cpcmd scope:get NAME --revision prints it)' },
      wait,
      verify: {
        type: 'boolean',
        description: 'check the value against the outside world first (mail.smart-host: log in to the relay); change nothing if that fails',
      },
      purge: {
        type: 'boolean',
        description: "delete what the set stops using instead of keeping it (mail.dkim DOMAIN false --purge: the domain's keys)",
      },
    },
    async run({ args, flags }, client) {
      const [name, ...rest] = args;
      if (rest.length === 0) throw new CliError(`scope:set ${name} needs a value`, ExitCodes.usage, `cpcmd scope:info ${name} shows its usage`);
      // Each value, and beside it the text as typed, for a scope that wants a string (1.50 stays 1.50).
      const params: Record<string, unknown> = { name: name!, ...readArgs(rest) };
      if (flags['dry-run']) params.dryRun = true;
      if (flags.converge === false) params.converge = false;
      if (flags['if-revision'] !== undefined) params.ifRevision = flags['if-revision'];
      if (flags.verify) params.verify = true;
      if (flags.purge) params.purge = true;
      if (!params.dryRun) params.async = true;
      return viaJob(client, () => client.call('scope.set', params as never), flags, name!);
    },
  },
  {
    id: 'scope:reset',
    summary: 'Put a scope back to its default and converge',
    examples: ['cpcmd scope:reset net.hostname --dry-run'],
    args: [{ name: 'name', description: 'the scope', required: true, completion: 'scope' }],
    flags: { 'dry-run': dryRun },
    async run({ args, flags }, client) {
      const r = await client.call('scope.reset', flags['dry-run'] ? { name: args[0]!, dryRun: true } : { name: args[0]! });
      return { data: r, text: applyText(r, args[0]!) };
    },
  },
  {
    id: 'scope:check',
    summary: 'Report drift between the stored vars and the system',
    description:
      `Exits ${ExitCodes.drift} when anything drifted, so scripts can test for it, and ${ExitCodes.convergeFailed} when a crash recovery is stuck ` +
      '(cpcmd converge finishes it once its cause is fixed). Drift is answered either way: ' +
      'cpcmd converge puts the system back to the vars, or --adopt NAME takes what the system has into the vars. ' +
      'On its first start scoped keeps what the system has as the value of every var no one has set; a default that differs ' +
      'is printed on stderr as "not yet applied" with the command that applies it, and is never applied silently.',
    examples: ['cpcmd scope:check', 'cpcmd scope:check mail.smart-host', 'cpcmd scope:check --adopt mail.smart-host'],
    args: [{ name: 'name', description: 'only this scope', completion: 'scope' }],
    flags: { adopt: { type: 'boolean', description: "keep the hand edit: store what the system has as the scope's value" }, 'dry-run': dryRun },
    async run({ args, flags }, client) {
      if (flags.adopt) {
        if (!args[0]) throw new CliError('--adopt needs the scope whose drift to keep', ExitCodes.usage, 'cpcmd scope:check --adopt mail.smart-host');
        const r = await client.call('scope.adopt', flags['dry-run'] ? { name: args[0], dryRun: true } : { name: args[0] });
        return { data: r, text: applyText(r, `${args[0]} adopted`), ...(r.notes?.length ? { notice: r.notes.map((n) => `note: ${n}`).join('\n') } : {}) };
      }
      const r = await client.call('scope.check', args[0] ? { name: args[0] } : {});
      if (r.recovery) return { data: r, text: [recoveryLines(r.recovery), driftLines(r.drift)].filter(Boolean).join('\n'), exitCode: ExitCodes.convergeFailed };
      const pending = r.pending?.length ? { notice: pendingLines(r.pending) } : {};
      return { data: r, text: r.ok ? 'ok: no drift' : driftLines(r.drift), exitCode: r.ok ? 0 : ExitCodes.drift, ...pending };
    },
  },
  {
    id: 'converge',
    summary: 'Bring units back to what the vars say (all units when none is named)',
    description: "The counterpart of ApisCP's upcp -sb UNIT: reverts hand edits of managed files.",
    examples: ['cpcmd converge', 'cpcmd converge net/hostname --dry-run'],
    args: [{ name: 'unit', description: 'units such as net/hostname (default: all)', variadic: true }],
    flags: { 'dry-run': dryRun, wait },
    async run({ args, flags }, client) {
      const params: { units?: string[]; dryRun?: boolean; async?: boolean } = {};
      if (args.length) params.units = args;
      if (flags['dry-run']) params.dryRun = true;
      else params.async = true;
      return viaJob(client, () => client.call('unit.converge', params), flags, args.length ? args.join(', ') : 'all units');
    },
  },
  {
    id: 'var:list',
    summary: 'List every var: type, value and the units that read it',
    examples: ['cpcmd var:list', 'cpcmd var:list -o json'],
    args: [],
    flags: {},
    async run(_input, client) {
      const r = await client.call('var.list', {});
      const text = columns(
        r.vars.map((v) => [v.name, `${formatWord(v.value as never)}${v.isDefault ? ' (default)' : ''}  [${v.type}] ${v.description}`] as const),
      );
      return { data: r.vars, text };
    },
  },
  {
    id: 'daemon:status',
    summary: 'Show the daemon: version, uptime, root, listeners, store and plugins',
    examples: ['cpcmd daemon:status'],
    args: [],
    flags: {},
    async run(_input, client) {
      const r = await client.call('daemon.status', {});
      return { data: r, text: renderPlain(r) };
    },
  },
];

commands.push(
  {
    id: 'job:get',
    summary: 'Show a job: state, progress, and its result or error',
    examples: ['cpcmd job:get job-1a2b3c4d5e6f', 'cpcmd job:get job-1a2b3c4d5e6f --wait'],
    args: [{ name: 'id', description: 'the job id that --no-wait printed', required: true }],
    flags: { wait: { type: 'boolean', description: 'wait until it ends, showing progress' } },
    async run({ args, flags }, client) {
      if (flags.wait) {
        const r = await waitForJob(client, args[0]!);
        return { data: r, text: applyText(r, args[0]!) };
      }
      const job = await client.call('job.get', { id: args[0]! });
      return { data: job, text: renderPlain(job) };
    },
  },
  {
    id: 'job:cancel',
    summary: 'Cancel a running job; what it changed so far is rolled back',
    examples: ['cpcmd job:cancel job-1a2b3c4d5e6f'],
    args: [{ name: 'id', description: 'the job id', required: true }],
    flags: {},
    async run({ args }, client) {
      const job = await client.call('job.cancel', { id: args[0]! });
      return { data: job, text: safe(`${job.id}: cancel requested (${job.state}, ${job.done}/${job.total} changes applied so far)`) };
    },
  },
  {
    id: 'plugin:list',
    summary: 'List the plugins: loaded, failed at load, or disabled for misbehaving, with the reason',
    examples: ['cpcmd plugin:list', 'cpcmd plugin:list -o json'],
    args: [],
    flags: {},
    async run(_input, client) {
      const r = await client.call('daemon.status', {});
      const rows = r.plugins.map(
        (p) =>
          [
            `${p.name}${p.version ? `@${p.version}` : ''}`,
            `${p.status}${p.scopes.length ? `  ${p.scopes.join(', ')}` : ''}${p.error ? `  ${p.error}` : ''}`,
          ] as const,
      );
      return { data: r.plugins, text: columns(rows), exitCode: r.plugins.some((p) => p.status !== 'loaded') ? ExitCodes.plugin : 0 };
    },
  },
  {
    id: 'token:create',
    summary: 'Create a bearer token for HTTP and WebSocket access; the token is printed once',
    description:
      'Roles: reader (list, info, get, check, the audit trail), operator (also set, reset and converge, limited to the ' +
      'scopes its --scopes globs match and the units they drive), admin (everything, tokens included). Only a hash is stored.',
    examples: ['cpcmd token:create --role reader --name monitoring', "cpcmd token:create --role operator --scopes 'mail.*' --expires 30d --name ci"],
    args: [],
    flags: {
      role: { type: 'string', description: 'what the token may do', options: ['admin', 'operator', 'reader'] },
      scopes: { type: 'string', description: 'comma-separated scope globs the token is limited to, such as mail.*,net.hostname' },
      expires: { type: 'string', description: 'lifetime such as 30d, 12h or 90m (default: never)' },
      name: { type: 'string', description: 'a name for the audit trail and token:revoke' },
    },
    async run({ flags }, client) {
      if (!flags.role) throw new CliError('token:create needs --role admin, operator or reader', ExitCodes.usage);
      const params: Record<string, unknown> = { role: flags.role };
      if (flags.scopes)
        params.scopes = String(flags.scopes)
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
      if (flags.expires) params.expires = flags.expires;
      if (flags.name) params.name = flags.name;
      const r = await client.call('token.create', params as never);
      // The token alone on stdout, so T=$(cpcmd token:create ...) captures just it; the note goes to stderr.
      const notice = safe(
        `(${r.name}, ${r.role}${r.scopes.length ? ` on ${r.scopes.join(',')}` : ''}${r.expiresAt ? `, expires ${r.expiresAt}` : ''}; shown once: store it now)`,
      );
      return { data: r, text: safe(r.token), notice };
    },
  },
  {
    id: 'token:list',
    summary: 'List the tokens (never their secrets)',
    examples: ['cpcmd token:list'],
    args: [],
    flags: {},
    async run(_input, client) {
      const r = await client.call('token.list', {});
      const rows = r.tokens.map(
        (t) =>
          [
            `${t.id} ${t.name}`,
            `${t.role}${t.scopes.length ? ` [${t.scopes.join(',')}]` : ''}  ${t.revoked ? 'revoked' : t.expiresAt ? `expires ${t.expiresAt}` : 'no expiry'}  last used ${t.lastUsedAt ?? 'never'}`,
          ] as const,
      );
      return { data: r.tokens, text: rows.length ? columns(rows) : 'no tokens' };
    },
  },
  {
    id: 'token:revoke',
    summary: 'Revoke a token by id or name; it stops working at once',
    examples: ['cpcmd token:revoke ci'],
    args: [{ name: 'id', description: "the token's id or name", required: true }],
    flags: {},
    async run({ args }, client) {
      const r = await client.call('token.revoke', { id: args[0]! });
      return { data: r, text: safe(`revoked ${r.name} (${r.id})`) };
    },
  },
  {
    id: 'audit:list',
    summary: 'Show the audit trail: who changed what, when, and how it ended',
    description:
      'The history of changes: every change is recorded before it is answered, secrets redacted: applied, rolled back, tokens made and revoked; ' +
      'a value whose JSON passes 1 KiB is shown as "(not kept: N bytes of JSON)" (an object keeps its small members). ' +
      'Oldest first; --limit counts from the newest. --refused shows the refused calls instead, and --unchanged the calls that ' +
      'changed nothing (answered unchanged): one row per caller, action and target, with how many times, the first and last time, ' +
      'and the last reason (--refused) or the last value set (--unchanged); a caller who adds more than a few new rows a minute ' +
      'gets one row, action *, counting the rest.',
    examples: [
      'cpcmd audit:list',
      "cpcmd audit:list --scope 'mail.*' --since 2h",
      'cpcmd audit:list --since 2026-01-31T00:00:00Z -o json',
      'cpcmd audit:list --refused --since 1d',
      'cpcmd audit:list --unchanged --since 1h',
    ],
    args: [],
    flags: {
      scope: { type: 'string', description: 'only entries whose target matches this glob' },
      since: {
        type: 'string',
        description: 'only entries since an ISO time or a duration back from now (2h, 7d); with --refused or --unchanged, rows seen since then',
      },
      limit: { type: 'integer', description: 'at most this many entries (default 100, at most 1000; read older ones with --since or --scope)' },
      refused: { type: 'boolean', description: 'the refused calls, with counts, instead of the changes' },
      unchanged: { type: 'boolean', description: 'the calls that changed nothing, with counts and the last value, instead of the changes' },
    },
    async run({ flags }, client) {
      const params: Record<string, unknown> = {};
      if (flags.scope) params.scope = flags.scope;
      if (flags.since) params.since = flags.since;
      if (flags.limit !== undefined) params.limit = flags.limit;
      if (flags.refused) params.refused = true;
      if (flags.unchanged) params.unchanged = true;
      const r = await client.call('audit.list', params as never);
      const times = (n: number) => `${n} time${n === 1 ? '' : 's'}`;
      // Every line goes through safe() whole: a field (a target, a reason, a value) cannot start a line of its own.
      if (flags.refused) {
        const rows = r.refusals ?? [];
        const text = rows
          .map((e) =>
            safe(
              `${e.last}  ${e.actor} via ${e.transport}  ${e.action} ${e.target}  refused ${times(e.count)} since ${e.first}${e.reason ? `: ${e.reason}` : ''}`,
            ),
          )
          .join('\n');
        return { data: rows, text: text || 'no refused calls' };
      }
      if (flags.unchanged) {
        const rows = r.unchanged ?? [];
        const text = rows
          .map((e) =>
            safe(
              `${e.last}  ${e.actor} via ${e.transport}  ${e.action} ${e.target}  unchanged ${times(e.count)} since ${e.first}${e.reason ? `: ${e.reason}` : ''}${e.value !== undefined ? `  -> ${JSON.stringify(e.value)}` : ''}`,
            ),
          )
          .join('\n');
        return { data: rows, text: text || 'no unchanged calls' };
      }
      const text = r.entries
        .map((e) =>
          safe(
            `${e.time}  ${e.actor} via ${e.transport}  ${e.action} ${e.target}  ${e.outcome}${e.reason ? `: ${e.reason}` : ''}${e.new !== undefined ? `  -> ${JSON.stringify(e.new)}` : ''}`,
          ),
        )
        .join('\n');
      return { data: r.entries, text: text || 'no entries' };
    },
  },
);

commands.push({
  id: 'gui',
  summary: 'Print a one-time login address for the Scope GUI, the web page scoped serves',
  description:
    'Asks the daemon for a login address on its TCP listener, http://HOST:PORT/#login=CODE, for your own token: the page gets the same role and scopes ' +
    '(over the unix socket, admin). Paste it into a browser on this machine: the page trades the code for a session cookie and takes it out of the address bar. ' +
    "Do not hand it to a program's command line (xdg-open, a browser started with it): every local user can read command lines while the code is still good. " +
    "The code is good once, for 60 s (the daemon's guiLoginTtlMs); run cpcmd gui again for a new one. The page can also take a pasted token. " +
    'A daemon started with --listen none serves no page.',
  examples: ['cpcmd gui', 'SCOPED_URL=http://127.0.0.1:8740/rpc SCOPED_TOKEN=$(cat reader.token) cpcmd gui', 'cpcmd gui -o json'],
  args: [],
  flags: {},
  async run(_input, client) {
    const r = await client.call('gui.login', {});
    // The address alone on stdout, so "$(cpcmd gui)" captures just it; the note goes to stderr.
    return { data: r, text: safe(r.url), notice: safe(`(one-time login address: good once, until ${r.expiresAt}; open it in a browser on this machine)`) };
  },
});

commands.push({
  id: 'autocomplete:scopes',
  summary: 'Print the scope names, one a line, for shell completion',
  description:
    'Asks the daemon (scope.list) and falls back to the first-party scope names written at build when it does not answer within a second, ' +
    'so completion works without a daemon. Never fails.',
  examples: ['cpcmd autocomplete:scopes'],
  args: [],
  flags: {},
  hidden: true,
  async run(_input, client) {
    let hung = false;
    const names = await Promise.race([
      client.call('scope.list', {}).then(
        (r) => r.scopes.map((s) => s.name),
        () => undefined,
      ),
      new Promise<undefined>((resolve) =>
        setTimeout(() => {
          hung = true;
          resolve(undefined);
        }, COMPLETION_WAIT_MS).unref(),
      ),
    ]);
    if (names) return { data: names, text: names.map((n) => safe(n)).join('\n') };
    const built = await builtScopeNames();
    // A daemon that hangs keeps the connection open: leave once the list is printed.
    if (hung) setTimeout(() => process.exit(), 100);
    return { data: built, text: built.map((n) => safe(n)).join('\n') };
  },
});

const COMPLETION_WAIT_MS = 1000;

/** A first-party scope as the build wrote it next to oclif.manifest.json (scopes.json). */
export interface BuiltScope {
  name: string;
  summary: string;
  usage: string;
  examples: string[];
}

/** The first-party scopes written at build (scopes.json); none when it is missing or unreadable. */
export async function builtScopes(): Promise<BuiltScope[]> {
  const { readFile } = await import('node:fs/promises');
  try {
    const list = JSON.parse(await readFile(new URL('../scopes.json', import.meta.url), 'utf8')) as unknown;
    if (!Array.isArray(list)) return [];
    return list.filter(
      (s): s is BuiltScope =>
        typeof s === 'object' &&
        s !== null &&
        typeof s.name === 'string' &&
        typeof s.summary === 'string' &&
        typeof s.usage === 'string' &&
        Array.isArray(s.examples) &&
        s.examples.every((e: unknown) => typeof e === 'string'),
    );
  } catch {
    return [];
  }
}

/** The first-party scope names written at build (scopes.json); none when it is missing. */
export async function builtScopeNames(): Promise<string[]> {
  return (await builtScopes()).map((s) => s.name);
}

export const commandsById = new Map(commands.map((c) => [c.id, c]));
