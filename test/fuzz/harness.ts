/**
 * The fuzzing harness of the TCP transports (issue 4), shared by the test files in this folder:
 * a deterministic generator of hostile requests (malformed JSON, JSON that is no request, wrong
 * jsonrpc versions and id types, deep nesting, huge strings within and beyond the size limits,
 * NUL, control characters, lone surrogates and odd unicode, junk batches, random method names,
 * and the real mutating methods with values that must be refused), a reference model of
 * JSON-RPC 2.0 (section 5/6 of the spec and the daemon's documented limits) every answer is
 * checked against, and a scoped on a Postfix config under a temp root (Postfix not started),
 * with its state, files, history and memory measured before and after.
 *
 * Deterministic: the seed (FUZZ_SEED, printed) fixes every request; FUZZ_N sets the number of
 * requests per transport.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ErrorCodes, methods } from '@scoped/protocol';
import { expect } from 'vitest';
import { responseProblems } from '../helpers/expect.js';
import {
  type HttpAnswer,
  type Scoped,
  WsClient,
  freshPeer,
  heapAfterGc,
  httpPost,
  pidsMentioning,
  rssBytes,
  scoped,
  sleep,
  treeDigest,
} from '../helpers/scoped.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5c0fed) >>> 0;
/** Authenticated requests per transport (HTTP and WebSocket each). */
export const PER_TRANSPORT = Number(process.env.FUZZ_N ?? 5_200);
export const UNAUTH_HTTP = 200;
export const UNAUTH_WS = 40;
/** The limits the daemon is started with (its defaults, made explicit). */
const MAX_BODY = 1024 * 1024;
const MAX_BATCH = 100;
const HTTP_WORKERS = 6;
const WS_CONNECTIONS = 3;
/** Messages pipelined on one WebSocket before a sentinel call closes the window. */
const WS_WINDOW = 16;
/**
 * Requests before the first RSS sample: enough for the heavy cases to have grown the heap to its
 * working size (the whole run once warmed up 1,000 a transport on one daemon; each transport now
 * has a daemon of its own).
 */
export const WARMUP = 2_000;
/** Quiet time before each heap measure, the same both times. */
const SETTLE_MS = 2_000;
/** What one more pass of the traffic may add to the live heap (an allowance for bounded caches such as the refusal rows). */
const HEAP_GROWTH_LIMIT = 2 * 1024 * 1024;
/** The most RSS the daemon may reach under the heaviest traffic (about 280 MB measured). */
const RSS_CEILING = 512 * 1024 * 1024;

const byName = new Map(methods.map((m) => [m.name as string, m]));
const MUTATING = new Set(methods.filter((m) => m.mutates).map((m) => m.name as string));
/** Read methods the fuzz only ever calls with params that must fail (a live subscription would send events). */
const NEVER_OK = new Set(['events.subscribe']);
const READS = methods.filter((m) => !m.mutates && !NEVER_OK.has(m.name)).map((m) => m.name as string);
const ALL_METHODS = methods.map((m) => m.name as string);

// ---------------------------------------------------------------------------------------------
// a seeded PRNG (mulberry32)

interface Rng {
  next(): number;
  int(n: number): number;
  pick<T>(a: readonly T[]): T;
  chance(p: number): boolean;
}

function makeRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: (arr) => arr[int(arr.length)]!, chance: (p) => next() < p };
}

// ---------------------------------------------------------------------------------------------
// hostile material

const ODD = [
  '\u0000',
  '\u0001',
  '\u0007',
  '\b',
  '\t',
  '\n',
  '\r',
  '\u000b',
  '\u001b[31m',
  '\u007f',
  '\u0085',
  '\u00a0',
  '\u00ad',
  '\u200b',
  '\u200d',
  '\u202e',
  '\u2028',
  '\u2029',
  '\ufeff',
  '\ufffd',
  '\uffff',
  '\ufffe',
  '\ud800',
  '\udfff',
  '\udbff\udfff',
  '😀',
  '👩‍👩‍👧',
  'e\u0301',
  'İ',
  'ß',
  'ﬃ',
  'Ω',
  '𝕏',
  'ѕ',
  '２',
  '..',
  '../',
  '%00',
  '%n%s',
  '${x}',
  '$(id)',
  '`id`',
  '"',
  "'",
  '\\',
  '\\u0000',
  '<script>',
  '{{7*7}}',
  ';',
  '|',
  '&',
  '=',
  ',',
  ':',
  '[',
  ']',
  '{',
  '}',
  '*',
  '?',
  'null',
  'undefined',
  '__proto__',
  'constructor',
  ' ',
  'mail.example.com',
  'net.hostname',
  'relayhost=',
  'A'.repeat(300),
];
/** One of these in a string makes it an invalid hostname, relay host, user name, token name, glob or main.cf key. */
const BREAKERS = ['\u0000', '\n', '\t', ' ', '\u007f', '\u0001', '\r', '\u001f'];
const NUMBERS = [0, -0, 1, -1, 0.5, 1e308, -1e308, 5e-324, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 1e21, 123456789.123456789, Number.MAX_SAFE_INTEGER];
// mail.deliverability is left out: its answer asks the DNS, which a fuzz run must not wait for.
const SCOPE_NAMES = [
  'net.hostname',
  'mail.smart-host',
  'mail.spam-filter',
  'mail.rspamd-piggyback',
  'mail.dkim',
  'mail.transport',
  'mail.sender-ip',
  'mail.srs',
  'mail.submission',
  'mail.tls-policy',
  'cp.bootstrapper',
  'cp.config',
];
const VAR_NAMES = [
  'postfix_add_sasl_auth_header',
  'postfix_custom_config',
  'postfix_relay_mynetworks',
  'postfix_smarthost',
  'postfix_smtp_tls_security_level',
  'postfix_submission',
  'postfix_tls_policy',
  'postfix_smtp_tls_fingerprints',
  'postsrsd_enabled',
  'mail_transports',
  'mail_sender_ips',
  'mail_default_spf',
  'mail_default_dmarc',
  'rspamd_enabled',
  'spamfilter',
  'system_hostname',
];
const UNIT_NAMES = [
  'net/hostname',
  'mail/configure-postfix',
  'mail/spam-filter',
  'mail/transport',
  'mail/sender-ip',
  'mail/srs',
  'mail/submission',
  'mail/tls-policy',
];

function junkString(r: Rng, max = 24): string {
  let s = '';
  const n = r.int(max + 1);
  for (let i = 0; i < n; i++) {
    s += r.chance(0.35) ? r.pick(ODD) : r.chance(0.5) ? String.fromCharCode(0x20 + r.int(0x5f)) : String.fromCharCode(r.int(0x10000));
  }
  return s;
}

/** A junk string that no validator of a name, host, glob or key can accept. */
function hostile(r: Rng, max = 16): string {
  const s = junkString(r, max);
  const at = r.int(s.length + 1);
  return s.slice(0, at) + r.pick(BREAKERS) + s.slice(at);
}

function junkObject(r: Rng, depth = 0): Record<string, unknown> {
  const keys = ['__proto__', 'constructor', 'prototype', 'name', 'value', 'args', 'dryRun', 'id', '', '\u0000', 'toString'];
  // fromEntries defines own properties, so "__proto__" is sent as a key and does not set a prototype.
  return Object.fromEntries(Array.from({ length: r.int(5) }, () => [r.chance(0.5) ? r.pick(keys) : junkString(r, 8), junkValue(r, depth + 1)]));
}

function junkValue(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 2 ? 7 : 9)) {
    case 0:
      return r.pick(NUMBERS);
    case 1:
      return junkString(r);
    case 2:
      return hostile(r);
    case 3:
      return r.chance(0.5);
    case 4:
      return null;
    case 5:
      return r.int(1_000_000) - 500_000;
    case 6:
      return r.pick(ODD);
    case 7:
      return Array.from({ length: r.int(5) }, () => junkValue(r, depth + 1));
    default:
      return junkObject(r, depth);
  }
}

/** Never a number or boolean: cp.bootstrapper takes those as text (1.5 would be a valid hostname). */
function hostileScalar(r: Rng): unknown {
  return r.pick([hostile(r), hostile(r), null, [hostile(r)], { [hostile(r, 4)]: hostile(r) }]);
}

function hostileRelayHost(r: Rng): string {
  return r.pick([
    hostile(r),
    'relay.example.com=evil',
    'a.example.com,b.example.com',
    '[relay.example.com]:0',
    '[relay.example.com]:99999',
    '[::1',
    'relay..example.com',
    '-relay.example.com',
    '[ipv6:zz::1]',
    'relay.example.com:587:25',
    `relay.example.com\nrelayhost = evil.example.org`,
    `[relay.example.com]:587\u0000`,
    '',
  ]);
}

function hostileSmartHost(r: Rng): unknown {
  return r.pick<() => unknown>([
    () => ({ host: hostileRelayHost(r) }),
    () => ({ host: 'relay.example.com', username: 'alice' }),
    () => ({ host: 'relay.example.com', password: 's3cret' }),
    () => ({ host: 'relay.example.com', username: hostile(r), password: 's3cret' }),
    () => ({ host: 'relay.example.com', username: 'alice', password: `pw\n${hostile(r)}` }),
    () => ({ host: '[relay.example.com]:587', [`x${junkString(r, 6)}`]: 1 }),
    () => ({ host: r.pick([42, null, true, [], {}]) }),
    () => ({}),
    () => r.pick([true, 0, 'relay.example.com', [], null, hostile(r)]),
  ])();
}

function hostileVarValue(r: Rng, name: string): unknown {
  if (name === 'postfix_custom_config') {
    return r.pick<() => unknown>([
      () => ({ [hostile(r, 8)]: 'x' }),
      () => ({ myhostname: `a${r.pick(['\n', '\r', '\u0000'])}${junkString(r, 8)}` }),
      () => ({ Relayhost: 'evil.example.org' }),
      () => hostile(r),
      () => null,
    ])();
  }
  if (name === 'postfix_smarthost') return hostileSmartHost(r);
  return hostileScalar(r);
}

function validFqdn(r: Rng, n: number): string {
  const label = () => `${String.fromCharCode(97 + r.int(26))}${Math.floor(r.next() * 1e6).toString(36)}`;
  return `fz${n}.${label()}.${r.pick(['example', 'test', 'invalid'])}`;
}

function badFqdn(r: Rng): string {
  return r.pick([
    hostile(r),
    'mail',
    '.example.com',
    'a..b.example.com',
    '-a.example.com',
    'a-.example.com',
    'a_b.example.com',
    'ex ample.com',
    'münchen.example',
    'mail.example.com\n127.0.0.1 evil',
    'MAIL.EXAMPLE.COM\u0000',
    `${'a'.repeat(64)}.example.com`,
    `${`${'a'.repeat(63)}.`.repeat(4)}com`,
    '',
  ]);
}

interface Call {
  method: string;
  params?: unknown;
}

/** A mutating call that must be refused: every branch is invalid by construction. */
function hostileMutation(r: Rng, method = r.pick([...MUTATING]), n = 0): Call {
  const junkName = () => r.pick([junkString(r), hostile(r), 42, null, [], {}, 'x'.repeat(201), 'no.such-scope']);
  const realScope = () => r.pick(SCOPE_NAMES);
  switch (method) {
    case 'scope.set':
      return {
        method,
        params: r.pick<() => unknown>([
          () => ({ name: 'net.hostname', value: r.chance(0.7) ? badFqdn(r) : r.pick([42, null, true, [], {}, ['a.example.com']]) }),
          () => ({ name: 'net.hostname', args: r.pick([[badFqdn(r)], [], ['a.example.com', 'b.example.com'], [42], [null], [['x']]]) }),
          () => ({ name: 'mail.smart-host', value: hostileSmartHost(r) }),
          () => ({
            name: 'mail.smart-host',
            args: r.pick([
              [hostileRelayHost(r)],
              ['relay.example.com', 'alice'],
              ['relay.example.com', hostile(r), 'pw'],
              [['relay', 'example']],
              [null],
              [42],
              ['relay.example.com', 'u', 'p', 'x'],
            ]),
          }),
          () => ({ name: 'mail.spam-filter', value: r.pick([hostile(r), 42, null, {}, []]) }),
          () => ({ name: 'mail.rspamd-piggyback', value: r.pick([hostile(r), 42, null, {}, [], 'true']) }),
          () => ({ name: 'cp.bootstrapper', value: { var: r.chance(0.5) ? junkString(r) : hostile(r), value: junkValue(r) } }),
          () => {
            const v = r.pick(VAR_NAMES);
            return { name: 'cp.bootstrapper', value: { var: v, value: hostileVarValue(r, v) } };
          },
          () => ({ name: 'cp.bootstrapper', args: r.pick([[hostile(r), 'x'], [r.pick(VAR_NAMES)], [r.pick(VAR_NAMES), hostile(r)], []]) }),
          () => ({ name: junkName(), value: junkValue(r) }),
          () => ({ name: realScope(), value: validFqdn(r, n), [`x${junkString(r, 6)}`]: junkValue(r) }),
          () => ({
            name: 'net.hostname',
            value: validFqdn(r, n),
            [r.pick(['dryRun', 'async', 'verify', 'converge'])]: r.pick(['true', 1, 0, null, [], {}, 'no']),
          }),
          () => ({ name: 'net.hostname', value: validFqdn(r, n), ifRevision: r.pick([-1, 0.5, '0', null, [], 1e400]) }),
          () => ({ name: 'net.hostname', value: validFqdn(r, n), args: [validFqdn(r, n)] }),
          () => ({ name: 'net.hostname' }),
          () => ({ name: 'net.hostname', value: validFqdn(r, n), converge: false }),
          () => ({ name: 'net.hostname', value: badFqdn(r), async: true }),
          () => ({ name: 'mail.smart-host', value: hostileSmartHost(r), verify: true }),
        ])(),
      };
    case 'scope.reset':
    case 'scope.adopt':
      return {
        method,
        params: r.pick<() => unknown>([
          () => ({ name: junkName() }),
          () => ({ name: realScope(), dryRun: r.pick(['x', 1, null, {}]) }),
          () => ({ name: realScope(), [`x${junkString(r, 6)}`]: 1 }),
          () => ({}),
          () => ({ name: hostile(r) }),
        ])(),
      };
    case 'var.set': {
      const v = r.pick(VAR_NAMES);
      return {
        method,
        params: r.pick<() => unknown>([
          () => ({ name: v, value: hostileVarValue(r, v) }),
          () => ({ name: v, value: hostileVarValue(r, v), dryRun: r.chance(0.5) }),
          () => ({ name: junkName(), value: junkValue(r) }),
          () => ({ name: v }),
          () => ({ name: v, value: hostileVarValue(r, v), converge: 'no' }),
          () => ({ name: v, value: hostileVarValue(r, v), [`x${junkString(r, 6)}`]: true }),
        ])(),
      };
    }
    case 'unit.converge':
      // Never {} nor an empty list: that converges every unit.
      return {
        method,
        params: r.pick<() => unknown>([
          () => ({ units: Array.from({ length: 1 + r.int(3) }, () => (r.chance(0.5) ? junkString(r, 12) || 'x' : hostile(r))) }),
          () => ({ units: [r.pick(UNIT_NAMES), hostile(r)] }),
          () => ({ units: r.pick(['net/hostname', 42, null, {}, true]) }),
          () => ({ units: [42] }),
          () => ({ units: Array(65).fill('net/hostname') }),
          () => ({ units: ['net/hostname'], dryRun: r.pick(['yes', 1, null]) }),
          () => ({ units: ['net/hostname'], [`x${junkString(r, 6)}`]: 1 }),
          () => ({ units: ['net/hostname'], async: 'now' }),
        ])(),
      };
    case 'token.create':
      return {
        method,
        params: r.pick<() => unknown>([
          () => ({ role: r.pick([junkString(r), hostile(r), 'root', 'ADMIN', ' admin', 42, null, [], {}]) }),
          () => ({ role: r.pick(['admin', 'operator', 'reader']), name: r.pick([hostile(r), 'x'.repeat(65), '', 42]) }),
          () => ({ role: 'reader', scopes: r.pick([[hostile(r)], 'net.*', [42], Array(33).fill('net.*'), [''], null]) }),
          () => ({ role: 'operator', expires: r.pick(['forever', '-1d', '1y', '10', hostile(r), '1.5h', 30, '']) }),
          () => ({ role: 'admin', [`x${junkString(r, 6)}`]: 1 }),
          () => ({}),
        ])(),
      };
    default:
      // token.revoke, job.cancel: no token or job exists, so every id is unknown.
      return {
        method,
        params: r.pick<() => unknown>([
          () => ({ id: junkString(r, 40) || 'x' }),
          () => ({ id: hostile(r) }),
          () => ({ id: '' }),
          () => ({ id: 42 }),
          () => ({ id: 'x'.repeat(65) }),
          () => ({}),
          () => ({ id: 'x', extra: 1 }),
        ])(),
      };
  }
}

/** A read call, with params from valid to junk. */
function readCall(r: Rng): Call {
  const method = r.pick(READS);
  const params = r.pick<() => unknown>([
    () => junkObject(r),
    () => ({}),
    () => ({ name: r.pick([...SCOPE_NAMES, ...VAR_NAMES, junkString(r), hostile(r), 42, null, [], {}, 'x'.repeat(201)]) }),
    () => ({ glob: r.pick(['net.*', '*', '?', '*.*', junkString(r), hostile(r), '[', 'mail.[', 7, '*'.repeat(200)]) }),
    () => ({ name: r.pick(SCOPE_NAMES), args: r.pick([[], [r.pick(VAR_NAMES)], [junkValue(r)], junkValue(r), Array(65).fill(1)]) }),
    () => ({
      scope: r.pick([junkString(r), 'net.*']),
      since: r.pick(['2h', 'yesterday', junkString(r), '99999999999999d', '2026-01-01T00:00:00Z', '']),
      limit: r.pick([1, 5, 0, -1, 1.5, 'x', 10_001]),
    }),
    () => ({ id: r.pick([junkString(r), hostile(r), '', 'x'.repeat(65), 5]) }),
    () => ({ subscription: r.pick([junkString(r), hostile(r), '', 1]) }),
  ])();
  return { method, params };
}

function hostileSubscribe(r: Rng): Call {
  return {
    method: 'events.subscribe',
    params: r.pick([
      { topics: [hostile(r)] },
      { topics: [] },
      { topics: 'scope.changed' },
      { topics: ['Scope.Changed'] },
      { topics: ['scope.changed'], since: -1 },
      { topics: ['scope.changed'], x: 1 },
      {},
    ]),
  };
}

/** A method name that is not one: 'unit.converge'.replace('s', …) is still unit.converge, and {} would converge everything. */
const notReal = (name: string) => (byName.has(name) ? `${name}\u0000` : name);

function randomMethodName(r: Rng): string {
  const real = r.pick(ALL_METHODS);
  return notReal(
    r.pick([
      junkString(r),
      hostile(r),
      `rpc.${junkString(r, 8)}`,
      r.pick(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'then', 'prototype']),
      r.pick(['', ' ', 'scope', 'scope.', '.list', 'scope..list', 'Scope.List', 'SCOPE.LIST', 'scope/list', 'scope_list', 'rpc.discover.x']),
      `${real}${r.pick(ODD)}`,
      `${r.pick(ODD)}${real}`,
      real.replace('s', 'ѕ'),
      real.toUpperCase(),
      `${real} `,
    ]),
  );
}

/** Something to put in a request envelope: never a call that could change anything. */
function safeCall(r: Rng, n: number): Call {
  const k = r.next();
  if (k < 0.45) return readCall(r);
  if (k < 0.82) return hostileMutation(r, undefined, n);
  if (k < 0.85) return hostileSubscribe(r);
  return { method: randomMethodName(r), params: r.chance(0.8) ? junkObject(r) : r.pick([[], [1, 2], undefined]) };
}

/** A valid id, mostly unique (so answers can be matched on a WebSocket), sometimes odd. */
function makeId(r: Rng, n: number): string | number | null {
  const k = r.next();
  if (k < 0.4) return n;
  if (k < 0.6) return `f${n}${junkString(r, 12)}`;
  if (k < 0.7) return r.chance(0.5) ? n + 0.5 : -n;
  if (k < 0.76) return n * 1e15;
  if (k < 0.8) return null;
  if (k < 0.83) return `f${n}-${'é'.repeat(2_000 + r.int(8_000))}`;
  return String(n);
}

function envelope(call: Call, id: unknown, withId = true): Record<string, unknown> {
  const o: Record<string, unknown> = { jsonrpc: '2.0', method: call.method };
  if (call.params !== undefined) o.params = call.params;
  if (withId) o.id = id;
  return o;
}

// ---------------------------------------------------------------------------------------------
// the reference model: what JSON-RPC 2.0 (and the daemon's documented limits) say must come back

/** One response that is due: its id as it must come back on the wire, and what may be in it. */
interface Due {
  id: unknown;
  /** Allowed error codes; 'any' is any code the spec allows. */
  codes: number[] | 'any';
  /** A result is acceptable (otherwise only an error). */
  result: boolean;
  /** The method, to check a result against its schema. */
  method?: string;
  /** A result must be a dry run's plan. */
  planned?: boolean;
  /** The request this is due for, to name it in a problem (WebSocket answers arrive in any order). */
  origin?: Case;
}

type Expect =
  | { kind: 'none' }
  | { kind: 'one'; due: Due }
  | { kind: 'batch'; items: Due[] }
  | { kind: 'too-large' }
  | { kind: 'http-status'; status: number; codes: number[] }
  /** The Scope GUI's page: HTML, never a JSON-RPC answer. */
  | { kind: 'page' }
  | { kind: 'ws-close'; code: number };

const wire = (id: unknown): unknown => JSON.parse(JSON.stringify(id) ?? 'null');
const validId = (id: unknown) => typeof id === 'string' || typeof id === 'number' || id === null;

function modelSingle(v: unknown): Due | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return { id: null, codes: [ErrorCodes.InvalidRequest], result: false };
  const r = v as Record<string, unknown>;
  const hasId = Object.hasOwn(r, 'id');
  const idOk = !hasId || validId(r.id);
  const paramsOk = !Object.hasOwn(r, 'params') || (r.params !== null && typeof r.params === 'object');
  if (r.jsonrpc !== '2.0' || typeof r.method !== 'string' || !idOk || !paramsOk) {
    // The id comes back when it could be read, null otherwise.
    return { id: hasId && idOk ? wire(r.id) : null, codes: [ErrorCodes.InvalidRequest], result: false };
  }
  if (!hasId) return null; // a notification: never an answer, whatever happens
  const id = wire(r.id);
  const method = r.method;
  if (!byName.has(method)) return { id, codes: [ErrorCodes.MethodNotFound], result: false };
  if (Array.isArray(r.params)) return { id, codes: [ErrorCodes.InvalidParams], result: false };
  if (MUTATING.has(method)) {
    const dry = (r.params as Record<string, unknown> | undefined)?.dryRun === true;
    return { id, codes: 'any', result: dry, method, planned: dry };
  }
  if (NEVER_OK.has(method)) return { id, codes: 'any', result: false, method };
  return { id, codes: 'any', result: true, method };
}

function model(text: string): Expect {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { kind: 'one', due: { id: null, codes: [ErrorCodes.ParseError], result: false } };
  }
  if (!Array.isArray(v)) {
    const due = modelSingle(v);
    return due ? { kind: 'one', due } : { kind: 'none' };
  }
  if (v.length === 0 || v.length > MAX_BATCH) return { kind: 'one', due: { id: null, codes: [ErrorCodes.InvalidRequest], result: false } };
  const items = v.map(modelSingle).filter((d): d is Due => d !== null);
  return items.length ? { kind: 'batch', items } : { kind: 'none' };
}

/** Whether a text would reach a mutating method (or the subscription) at all. */
function callsMutating(text: string): boolean {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return false;
  }
  return (Array.isArray(v) ? v : [v]).some(
    (x) => x !== null && typeof x === 'object' && (MUTATING.has((x as { method?: string }).method!) || NEVER_OK.has((x as { method?: string }).method!)),
  );
}

/** What the daemon decodes from the bytes we send. */
const decoded = (body: string | Buffer) => (typeof body === 'string' ? Buffer.from(body, 'utf8') : body).toString('utf8');

// ---------------------------------------------------------------------------------------------
// the cases

interface Case {
  cat: string;
  body: string | Buffer;
  expect: Expect;
  /** HTTP: another method or path. */
  http?: { method?: string; path?: string };
  /** WebSocket: send as a binary frame (the daemon decodes it as UTF-8), or as a text frame that is not UTF-8. */
  frame?: 'binary' | 'bad-text';
}

const normal = (cat: string, body: string | Buffer, extra: Partial<Case> = {}): Case => ({ cat, body, expect: model(decoded(body)), ...extra });

function idLiteral(r: Rng, n: number): string {
  return r.pick([
    JSON.stringify(makeId(r, n)),
    '1e400',
    '-1e-400',
    '-0',
    '1.0',
    '1E2',
    '12345678901234567890123',
    '0.1',
    '1.7976931348623157e308',
    '""',
    'null',
    `${n}.000000000000000001`,
  ]);
}

const BUILDERS: Record<string, (r: Rng, n: number, transport: 'http' | 'ws') => Case> = {
  malformed(r, n) {
    const valid = JSON.stringify(envelope(safeCall(r, n), makeId(r, n)));
    const pick = r.int(7);
    if (pick === 0) return normal('malformed', valid.slice(0, r.int(valid.length)));
    if (pick === 1) return normal('malformed', Buffer.from(Array.from({ length: r.int(300) }, () => r.int(256))));
    if (pick === 2) {
      // Flipped bytes only in a read call: a flip could turn a refused value into a valid one.
      const b = Buffer.from(JSON.stringify(envelope(readCall(r), makeId(r, n))));
      for (let i = 0, k = 1 + r.int(3); i < k; i++) b[r.int(b.length)] = r.int(256);
      // ... and a flip can make scope.get into scope.set: send such a one truncated instead.
      return normal('malformed', callsMutating(decoded(b)) ? valid.slice(0, r.int(valid.length)) : b);
    }
    if (pick === 3) return normal('malformed', junkString(r, 200));
    const tricks = [
      "{'jsonrpc':'2.0','method':'scope.list','id':1}",
      `{"jsonrpc":"2.0","method":"scope.list","id":${n},}`,
      '[1,2,]',
      `{"jsonrpc":"2.0","method":"scope.list","params":{"glob":NaN},"id":${n}}`,
      `{"jsonrpc":"2.0","method":"scope.list","params":{"glob":Infinity},"id":${n}}`,
      `{"jsonrpc":"2.0","method":"scope.list","params":{"glob":undefined},"id":${n}}`,
      `/* c */{"jsonrpc":"2.0","method":"scope.list","id":${n}}`,
      `{"jsonrpc":"2.0","method":"scope.list","id":${n}}//`,
      `\ufeff{"jsonrpc":"2.0","method":"scope.list","id":${n}}`,
      `{"jsonrpc":"2.0","method":"scope.list\u0001","id":${n}}`,
      `{"jsonrpc":"2.0","method":"scope.list\u0000","id":${n}}`,
      `{"jsonrpc":"2.0","method":"\\u12","id":${n}}`,
      `{"jsonrpc":"2.0","method":"scope.list","id":${n}}{"jsonrpc":"2.0","method":"scope.list","id":${n + 1}}`,
      `{"jsonrpc":"2.0","method":"scope.list","id":0${n}}`,
      '0x10',
      '.5',
      '+1',
      'tru',
      'nul',
      '',
      ' ',
      '\n\t',
      '"unterminated',
      '{',
      '}',
      '[',
      ']',
      '{"a" 1}',
      '{"a":1,,"b":2}',
      '{1:2}',
      "'x'",
      `{"jsonrpc":"2.0","method":"scope.list","id":${n}`,
      `{"jsonrpc":"2.0","method":"scope.list","params":{"glob":"net.*"]},"id":${n}}`,
      `{"jsonrpc":"2.0","method":"scope.list","params":{"glob":"\ud800"},"id":${n}}`,
      `{"jsonrpc":"2.0","method":"scope.list","params":{"glob":"net.*\\"},"id":${n}}`,
      '\u0000',
      'null garbage',
    ];
    return normal('malformed', r.pick(tricks));
  },

  'not-a-request'(r, n) {
    const v = r.pick<() => unknown>([
      () => r.pick(NUMBERS),
      () => junkString(r),
      () => null,
      () => r.chance(0.5),
      () => ({}),
      () => ({ foo: 'bar' }),
      () => junkObject(r),
      () => Array.from({ length: 1 + r.int(6) }, () => junkValue(r)),
      () => ({ method: 'scope.list', id: n }),
      () => ({ jsonrpc: '2.0', id: n }),
      () => ({ jsonrpc: '2.0', result: 1, id: n }),
      () => ({ jsonrpc: '2.0', error: { code: -32600, message: 'x' }, id: n }),
    ])();
    return normal('not-a-request', JSON.stringify(v) ?? 'null');
  },

  'bad-version'(r, n) {
    const o = envelope(safeCall(r, n), makeId(r, n), r.chance(0.8));
    const version = r.pick<unknown>([
      '1.0',
      '2',
      '2.00',
      ' 2.0',
      '2.0 ',
      '2.0\u0000',
      2,
      2.0,
      2.1,
      null,
      true,
      ['2.0'],
      { v: '2.0' },
      '',
      '２.０',
      '2\u200b.0',
      undefined,
    ]);
    if (version === undefined) delete o.jsonrpc;
    else o.jsonrpc = version;
    if (r.chance(0.2)) {
      delete o.jsonrpc;
      o[r.pick(['JSONRPC', 'jsonRPC', 'json-rpc', 'jsonrpc '])] = '2.0';
    }
    return normal('bad-version', JSON.stringify(o));
  },

  'bad-id'(r, n) {
    const call = safeCall(r, n);
    if (r.chance(0.5)) {
      const id = r.pick<unknown>([{}, [], [n], true, false, { id: n }, [[[n]]], junkObject(r), { toString: 'x' }]);
      return normal('bad-id', JSON.stringify({ ...envelope(call, 0), id }));
    }
    const params = call.params === undefined ? '' : `,"params":${JSON.stringify(call.params)}`;
    return normal('bad-id', `{"jsonrpc":"2.0","method":${JSON.stringify(call.method)}${params},"id":${idLiteral(r, n)}}`);
  },

  deep(r, n) {
    const objects = r.chance(0.3);
    const depth = objects ? r.pick([64, 1_000, 10_000, 50_000, 100_000]) : r.pick([64, 1_000, 10_000, 100_000, 200_000, 400_000]);
    const deep = objects ? `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}` : `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const id = JSON.stringify(makeId(r, n));
    const body = r.pick([
      () => deep,
      () => `[${deep}]`,
      () => `{"jsonrpc":"2.0","method":"scope.get","params":{"name":"cp.bootstrapper","args":[${deep}]},"id":${id}}`,
      () => `{"jsonrpc":"2.0","method":"var.set","params":{"name":${JSON.stringify(r.pick(VAR_NAMES))},"value":${deep}},"id":${id}}`,
      () => `{"jsonrpc":"2.0","method":"scope.set","params":{"name":"cp.bootstrapper","value":{"var":"postfix_custom_config","value":${deep}}},"id":${id}}`,
      () => `{"jsonrpc":"2.0","method":"scope.set","params":{"name":${JSON.stringify(r.pick(SCOPE_NAMES))},"value":${deep}},"id":${id}}`,
      () => `{"jsonrpc":"2.0","method":"scope.set","params":{"name":${deep},"value":"a.example.com"},"id":${id}}`,
      () => `{"jsonrpc":"2.0","method":"token.create","params":{"role":${deep}},"id":${id}}`,
      () => `{"jsonrpc":"2.0","method":"scope.list","params":${objects ? deep : `{"glob":${deep}}`},"id":${id}}`,
      () => `{"jsonrpc":"2.0","method":"scope.list","params":{},"id":${deep}}`,
      () => `{"jsonrpc":"2.0","method":${deep},"id":${id}}`,
      () => `{"jsonrpc":${deep},"method":"scope.list","id":${id}}`,
      () => `{"jsonrpc":"2.0","method":"audit.list","params":{"scope":${deep}}}`,
    ])();
    return normal('deep', body);
  },

  huge(r, n) {
    const budget = r.pick([64 * 1024, 256 * 1024, 700 * 1024, MAX_BODY - 400]);
    const fill = (bytes: number) => {
      const unit = r.pick(['a', 'é', '😀', '\u0000', 'ab.', '\\']);
      return unit.repeat(Math.max(1, Math.floor(bytes / Buffer.byteLength(JSON.stringify(unit).slice(1, -1)))));
    };
    const id = makeId(r, n);
    const v = r.int(9);
    let body: string;
    if (v === 0) body = JSON.stringify(envelope({ method: fill(budget), params: {} }, id));
    else if (v === 1) body = JSON.stringify(envelope({ method: 'scope.set', params: { name: 'net.hostname', value: `${fill(budget)}\u0000` } }, id));
    else if (v === 2) body = JSON.stringify(envelope({ method: 'scope.get', params: { name: fill(budget) } }, id));
    else if (v === 3) body = JSON.stringify(envelope({ method: 'scope.list', params: { glob: 'net.*' } }, `f${n}-${fill(budget)}`));
    else if (v === 4) body = JSON.stringify(envelope({ method: 'scope.list', params: { [fill(budget)]: 1 } }, id));
    else if (v === 5) {
      const each = Math.floor(budget / MAX_BATCH) - 100;
      body = JSON.stringify(
        Array.from({ length: MAX_BATCH }, (_, i) =>
          envelope({ method: r.pick(['scope.list', 'no.such', 'scope.info']), params: { glob: fill(each) } }, n * 1000 + i),
        ),
      );
    } else if (v === 6)
      body = JSON.stringify(envelope({ method: 'var.set', params: { name: 'postfix_custom_config', value: { myhostname: `${fill(budget)}\n` } } }, id));
    else if (v === 7) {
      // Exactly at the limit: still served.
      const call = JSON.stringify(envelope({ method: 'scope.list', params: { glob: 'net.*' } }, id));
      body = call + ' '.repeat(MAX_BODY - Buffer.byteLength(call));
    } else body = `${' '.repeat(budget)}${JSON.stringify(envelope({ method: 'daemon.status', params: {} }, id))}`;
    if (Buffer.byteLength(body) > MAX_BODY) body = JSON.stringify(envelope({ method: 'scope.get', params: { name: 'x'.repeat(MAX_BODY - 200) } }, id));
    return normal('huge', body);
  },

  'control-unicode'(r, n) {
    const id = makeId(r, n);
    const real = r.pick(ALL_METHODS);
    const odd = () => r.pick(ODD);
    const v = r.int(6);
    if (v === 0)
      return normal(
        'control-unicode',
        JSON.stringify(
          envelope(
            {
              method: notReal(r.pick([`${real}${odd()}`, `${odd()}${real}`, real.replace('.', odd()), real.replace('s', 'ѕ'), `${real}\u0000${real}`])),
              params: {},
            },
            id,
          ),
        ),
      );
    if (v === 1)
      return normal(
        'control-unicode',
        JSON.stringify(envelope({ method: r.pick(READS), params: { name: `${r.pick(SCOPE_NAMES)}${odd()}`, [odd()]: odd() } }, id)),
      );
    if (v === 2)
      return normal(
        'control-unicode',
        JSON.stringify(envelope({ method: 'scope.get', params: { name: r.pick(SCOPE_NAMES), args: [junkString(r, 40), hostile(r)] } }, id)),
      );
    if (v === 3) {
      // Invalid UTF-8 inside a JSON string: overlong, surrogate halves, 5-byte forms, stray continuation bytes.
      const bad = r.pick([[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80], [0xff, 0xfe], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80]]);
      const [head, tail] = [`{"jsonrpc":"2.0","method":"scope.get","params":{"name":"net.hostname`, `"},"id":${JSON.stringify(id)}}`];
      return normal('control-unicode', Buffer.concat([Buffer.from(head), Buffer.from(bad), Buffer.from(tail)]));
    }
    if (v === 4) {
      // A lone surrogate escaped in the JSON text reaches the daemon as a lone surrogate.
      const esc = r.pick(['\\ud800', '\\udfff', '\\udbff\\udbff', '\\u0000', '\\u001b', '\\uffff', '\\u202e']);
      return normal('control-unicode', `{"jsonrpc":"2.0","method":"scope.info${esc}","params":{"name":"net.hostname${esc}"},"id":${JSON.stringify(id)}}`);
    }
    return normal('control-unicode', JSON.stringify(envelope(hostileMutation(r, undefined, n), id)));
  },

  'junk-batch'(r, n) {
    const len = r.chance(0.85) ? r.pick([0, 1, 2, 3, 4, 5, 8, 10, 20]) : r.pick([MAX_BATCH, MAX_BATCH + 1, 150, 1_000]);
    let k = 0;
    const item = (): unknown =>
      r.pick<() => unknown>([
        () => junkValue(r),
        () => envelope(readCall(r), n * 1000 + k++),
        () => envelope(safeCall(r, n), n * 1000 + k++, r.chance(0.7)),
        () => envelope({ method: randomMethodName(r), params: {} }, `f${n}-${k++}`),
        () => ({ jsonrpc: '1.0', method: 'scope.list', id: n * 1000 + k++ }),
        () => [],
        () => [envelope(readCall(r), n * 1000 + k++)],
        () => envelope(r.chance(0.15) ? hostileMutation(r, undefined, n) : readCall(r), null, false),
        () => ({ jsonrpc: '2.0', method: 'scope.list', id: n }), // a duplicate id
      ])();
    const arr =
      len > MAX_BATCH
        ? Array.from({ length: len }, () => r.pick<unknown>([1, null, {}, envelope({ method: 'scope.list' }, 1)]))
        : Array.from({ length: len }, item);
    return normal('junk-batch', JSON.stringify(arr));
  },

  'random-method'(r, n) {
    const id = makeId(r, n);
    const name = randomMethodName(r);
    if (r.chance(0.3)) {
      const real = r.pick(ALL_METHODS);
      if (MUTATING.has(real)) return normal('random-method', JSON.stringify(envelope(hostileMutation(r, real, n), id)));
      if (NEVER_OK.has(real)) return normal('random-method', JSON.stringify(envelope(hostileSubscribe(r), id)));
      return normal(
        'random-method',
        JSON.stringify(envelope({ method: real, params: r.pick([junkObject(r), [junkValue(r)], {}, { [hostile(r, 4)]: junkValue(r) }]) }, id)),
      );
    }
    return normal('random-method', JSON.stringify(envelope({ method: name, params: r.pick<unknown>([junkObject(r), [], [1, 'x'], undefined, {}]) }, id)));
  },

  'hostile-mutation'(r, n) {
    const call = hostileMutation(r, undefined, n);
    if (r.chance(0.1)) call.params = [call.params]; // by position: -32602
    return normal('hostile-mutation', JSON.stringify(envelope(call, makeId(r, n))));
  },

  'dry-run'(r, n) {
    const fqdn = validFqdn(r, n);
    const host = r.pick([`[relay${n}.example.com]:587`, `relay${n}.example.com`, '[192.0.2.1]', '[ipv6:2001:db8::1]:25']);
    const call = r.pick<Call>([
      { method: 'scope.set', params: { name: 'net.hostname', value: fqdn, dryRun: true } },
      { method: 'scope.set', params: { name: 'net.hostname', args: [fqdn.toUpperCase() + '.'], dryRun: true, async: true } },
      { method: 'scope.set', params: { name: 'mail.smart-host', value: { host }, dryRun: true } },
      { method: 'scope.set', params: { name: 'mail.smart-host', args: [host, 'alice', 's3cret'], dryRun: true } },
      { method: 'scope.set', params: { name: 'cp.bootstrapper', value: { var: 'postfix_relay_mynetworks', value: true }, dryRun: true } },
      { method: 'var.set', params: { name: 'postfix_smtp_tls_security_level', value: r.pick(['encrypt', 'dane', 'none']), dryRun: true } },
      { method: 'var.set', params: { name: 'postfix_custom_config', value: { smtpd_banner: `fuzz ${n}` }, dryRun: true } },
      { method: 'unit.converge', params: { units: [r.pick(UNIT_NAMES)], dryRun: true } },
      { method: 'unit.converge', params: { dryRun: true } },
      { method: 'scope.reset', params: { name: r.pick(['mail.smart-host', 'net.hostname', 'mail.spam-filter']), dryRun: true } },
      { method: 'scope.adopt', params: { name: r.pick(['net.hostname', 'mail.smart-host']), dryRun: true } },
    ]);
    return normal('dry-run', JSON.stringify(envelope(call, makeId(r, n))));
  },

  notification(r, n) {
    const v = r.int(4);
    if (v === 0) return normal('notification', JSON.stringify(Array.from({ length: 1 + r.int(5) }, () => envelope(safeCall(r, n), null, false))));
    if (v === 1)
      return normal('notification', JSON.stringify(envelope({ method: randomMethodName(r), params: r.pick<unknown>([[1], {}, undefined]) }, null, false)));
    return normal('notification', JSON.stringify(envelope(safeCall(r, n), null, false)));
  },

  'http-odd'(r, n) {
    const body = JSON.stringify(envelope(readCall(r), makeId(r, n)));
    const method = r.pick(['GET', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'POST', 'POST']);
    const p = r.pick([
      '/',
      '/rpc/',
      '/RPC',
      '//rpc',
      '/rpc/../rpc',
      '/%72pc',
      '/rpc%00',
      '/rpc#x',
      '/rpc;x',
      `/${[...Buffer.from(junkString(r, 10))].map((x) => `%${x.toString(16).padStart(2, '0')}`).join('')}`,
      '/rpc?x=1',
      '/rpc?',
      '/rpc?a=%00&b=\u00ff',
      '/rpc\u00e9',
    ]);
    const url = p.split('?')[0];
    const invalid = { codes: [ErrorCodes.InvalidRequest] };
    // Raw non-ASCII in the request target is not HTTP: Node's parser refuses it before the daemon's handler
    // runs, and the daemon should still answer in JSON-RPC, as it does for 404, 405, 413 and 401.
    if (/[^\x21-\x7e]/.test(p))
      return {
        cat: 'http-odd',
        body,
        http: { method, path: p },
        expect: { kind: 'http-status', status: 400, codes: [ErrorCodes.InvalidRequest, ErrorCodes.ParseError] },
      };
    // `/` is the Scope GUI's page: read with GET (HEAD), refused in JSON-RPC's shape for anything else.
    if (url === '/' && method === 'GET') return { cat: 'http-odd', body, http: { method, path: p }, expect: { kind: 'page' } };
    if (url === '/') return { cat: 'http-odd', body, http: { method, path: p }, expect: { kind: 'http-status', status: 405, ...invalid } };
    if (url !== '/rpc') return { cat: 'http-odd', body, http: { method, path: p }, expect: { kind: 'http-status', status: 404, ...invalid } };
    if (method !== 'POST') return { cat: 'http-odd', body, http: { method, path: p }, expect: { kind: 'http-status', status: 405, ...invalid } };
    return normal('http-odd', body, { http: { method, path: p } });
  },
};

const WEIGHTS: [string, number, ('http' | 'ws')[]][] = [
  ['malformed', 12, ['http', 'ws']],
  ['not-a-request', 8, ['http', 'ws']],
  ['bad-version', 7, ['http', 'ws']],
  ['bad-id', 9, ['http', 'ws']],
  ['deep', 3, ['http', 'ws']],
  ['huge', 2, ['http', 'ws']],
  ['control-unicode', 10, ['http', 'ws']],
  ['junk-batch', 8, ['http', 'ws']],
  ['random-method', 12, ['http', 'ws']],
  ['hostile-mutation', 16, ['http', 'ws']],
  ['dry-run', 3, ['http', 'ws']],
  ['notification', 8, ['http', 'ws']],
  ['http-odd', 3, ['http']],
  ['ws-binary', 3, ['ws']],
];

/** Over the size limit: HTTP 413 with a JSON-RPC error, or a WebSocket closed with 1009. */
function tooLarge(r: Rng, n: number, transport: 'http' | 'ws'): Case {
  const call = JSON.stringify(envelope({ method: 'scope.list', params: { glob: 'net.*' } }, n));
  const size = MAX_BODY + r.pick([1, 1_000, 500_000, 2_000_000]);
  const body = r.chance(0.5) ? call + ' '.repeat(size - call.length) : JSON.stringify(envelope({ method: 'scope.get', params: { name: 'x'.repeat(size) } }, n));
  return { cat: 'too-large', body, expect: transport === 'http' ? { kind: 'too-large' } : { kind: 'ws-close', code: 1009 } };
}

/** The plan of one transport: a category and a seed per request; each case is built when it is sent. */
interface Planned {
  cat: string;
  seed: number;
  n: number;
}

function plan(r: Rng, transport: 'http' | 'ws', count: number, base: number): Planned[] {
  const table = WEIGHTS.filter(([, , t]) => t.includes(transport));
  const total = table.reduce((s, [, w]) => s + w, 0);
  const out: Planned[] = [];
  for (let i = 0; i < count; i++) {
    let x = r.next() * total;
    const cat = table.find(([, w]) => (x -= w) < 0)?.[0] ?? 'malformed';
    out.push({ cat, seed: Math.floor(r.next() * 2 ** 32), n: base + i });
  }
  // The special ones, spread through the run.
  const special =
    transport === 'http'
      ? ['too-large', 'too-large', 'too-large', 'too-large', 'too-large', 'too-large']
      : ['too-large', 'too-large', 'too-large', 'too-large', 'bad-text', 'bad-text', 'bad-text', 'bad-text'];
  special.forEach((cat, k) => {
    const at = WARMUP + Math.floor(((k + 0.5) * (count - WARMUP)) / special.length);
    out[at] = { cat, seed: Math.floor(r.next() * 2 ** 32), n: base + at };
  });
  return out;
}

function build(p: Planned, transport: 'http' | 'ws'): Case {
  const r = makeRng(p.seed);
  if (p.cat === 'too-large') return tooLarge(r, p.n, transport);
  if (p.cat === 'bad-text') {
    const body = Buffer.concat([Buffer.from('{"jsonrpc":"2.0","method":"scope.list","id":"'), Buffer.from([0xc0, 0xaf, 0xff]), Buffer.from('"}')]);
    return { cat: 'bad-text', body, frame: 'bad-text', expect: { kind: 'ws-close', code: 1007 } };
  }
  if (p.cat === 'ws-binary') {
    const inner = r.pick(['malformed', 'control-unicode', 'random-method', 'hostile-mutation', 'junk-batch', 'notification']);
    const c = BUILDERS[inner]!(r, p.n, transport);
    return { ...c, cat: 'ws-binary', body: Buffer.from(c.body), frame: 'binary' };
  }
  return BUILDERS[p.cat]!(r, p.n, transport);
}

// ---------------------------------------------------------------------------------------------
// checking answers

interface Stats {
  sent: Record<string, number>;
  codes: Map<number, number>;
  statuses: Map<string, number>;
  results: number;
  problems: string[];
  rss: { end: number; peak: number; start: number };
  heap: { warm: number; end: number };
  store: { before: number; after: number };
  ms: number;
}

const stats: Stats = {
  sent: {},
  codes: new Map(),
  statuses: new Map(),
  results: 0,
  problems: [],
  rss: { end: 0, peak: 0, start: 0 },
  heap: { warm: 0, end: 0 },
  store: { before: 0, after: 0 },
  ms: 0,
};
const bump = <K>(m: Map<K, number>, k: K) => m.set(k, (m.get(k) ?? 0) + 1);

const show = (x: string | Buffer, max = 160) => {
  const s = typeof x === 'string' ? x : x.toString('utf8');
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…(${s.length} chars)` : s);
};

function problem(where: string, c: Case | undefined, what: string): void {
  const http = c?.http ? ` ${c.http.method ?? 'POST'} ${JSON.stringify(c.http.path ?? '/rpc')}` : '';
  if (stats.problems.length < 200) stats.problems.push(`${where}${c ? ` [${c.cat}]${http} request ${show(c.body)}` : ''}: ${what}`);
}

/** Why a response does not fit what is due, or undefined when it does. */
function misfit(resp: unknown, due: Due): string | undefined {
  const p = responseProblems(resp);
  if (p.length) return p.join('; ');
  const r = resp as { id: unknown; result?: unknown; error?: { code: number } };
  if (Array.isArray(resp)) return 'an array where one response was due';
  if (JSON.stringify(r.id) !== JSON.stringify(due.id)) return `id ${JSON.stringify(r.id)?.slice(0, 80)}, expected ${JSON.stringify(due.id)?.slice(0, 80)}`;
  if ('result' in r) {
    if (!due.result) return `a result where only an error may come back: ${JSON.stringify(r.result).slice(0, 200)}`;
    if (due.planned && (r.result as { status?: unknown })?.status !== 'planned')
      return `a dry run that did not only plan: ${JSON.stringify(r.result).slice(0, 200)}`;
    const m = due.method ? byName.get(due.method) : undefined;
    if (m) {
      const ok = m.result.safeParse(r.result);
      if (!ok.success) return `a result that does not match the ${due.method} schema: ${ok.error.message.slice(0, 200)}`;
    }
    return undefined;
  }
  if (due.codes !== 'any' && !due.codes.includes(r.error!.code)) return `error ${r.error!.code}, expected ${due.codes.join(' or ')}`;
  // Hostile input is expected input: refused with the spec's codes or a domain code, never an internal error.
  if (r.error!.code === ErrorCodes.InternalError) return `an internal error: ${JSON.stringify(r.error)}`;
  return undefined;
}

function tally(resp: unknown): void {
  for (const r of (Array.isArray(resp) ? resp : [resp]) as { result?: unknown; error?: { code?: unknown } }[]) {
    if (r && typeof r === 'object' && 'error' in r && typeof r.error?.code === 'number') bump(stats.codes, r.error.code);
    else if (r && typeof r === 'object' && 'result' in r) stats.results++;
  }
}

/**
 * Match responses to what is due, in any order: each response takes the most specific due
 * entry it fits. Returns the problems (unmatched responses and missing answers).
 */
function matchAll(got: unknown[], due: Due[]): string[] {
  const pool = [...due].sort((a, b) => spec(a) - spec(b));
  const out: string[] = [];
  let unexpected = 0;
  for (const g of got) {
    const at = pool.findIndex((d) => misfit(g, d) === undefined);
    if (at >= 0) pool.splice(at, 1);
    else {
      unexpected++;
      const sameId = pool.find((d) => JSON.stringify(d.id) === JSON.stringify((g as { id?: unknown })?.id));
      const origin = sameId?.origin ? ` to [${sameId.origin.cat}] ${show(sameId.origin.body, 200)}` : '';
      out.push(`unexpected answer ${JSON.stringify(g)?.slice(0, 300)}${origin}${sameId ? `: ${misfit(g, sameId)}` : ''}`);
    }
  }
  // An answer that did not fit is already reported; only say so when answers are missing on top.
  if (pool.length > unexpected)
    out.push(
      `${pool.length - unexpected} answer(s) missing, among ${pool.map((d) => (d.origin ? `[${d.origin.cat}] ${show(d.origin.body, 80)}` : JSON.stringify(d.id)?.slice(0, 40))).join(', ')}`,
    );
  return out;
}
const spec = (d: Due) => (d.codes === 'any' ? 100 : d.codes.length) + (d.result ? 1000 : 0);

function checkJsonAnswer(value: unknown, e: Expect): string[] {
  if (e.kind === 'one') return Array.isArray(value) ? ['an array where one response was due'] : matchAll([value], [e.due]);
  if (e.kind === 'batch') {
    if (!Array.isArray(value)) return [`one response where a batch answer was due: ${JSON.stringify(value).slice(0, 200)}`];
    if (value.length === 0) return ['an empty array'];
    return matchAll(value, e.items);
  }
  return [`an answer where none was due: ${JSON.stringify(value).slice(0, 200)}`];
}

function parse(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

function checkHttp(c: Case, r: HttpAnswer): void {
  bump(stats.statuses, String(r.status));
  const e = c.expect;
  if (e.kind === 'http-status' && r.status !== e.status)
    return problem('HTTP', c, `HTTP ${r.status}, expected ${e.status} with a JSON-RPC error: ${show(r.text, 300)}`);
  if (e.kind === 'none') {
    if (r.status !== 204 || r.text !== '') problem('HTTP', c, `a notification was answered: HTTP ${r.status} ${show(r.text, 300)}`);
    return;
  }
  if (e.kind === 'page') {
    if (r.status !== 200 || !/^text\/html/.test(String(r.headers['content-type']))) problem('HTTP', c, `the page: HTTP ${r.status} ${show(r.text, 300)}`);
    return;
  }
  const j = parse(r.text);
  if (!j.ok) return problem('HTTP', c, `HTTP ${r.status} with a body that is not JSON: ${show(r.text, 300)}`);
  tally(j.value);
  if (!/^application\/json/.test(String(r.headers['content-type']))) problem('HTTP', c, `content-type ${r.headers['content-type']}`);
  if (e.kind === 'too-large' || e.kind === 'http-status') {
    const status = e.kind === 'too-large' ? 413 : e.status;
    const codes = e.kind === 'too-large' ? [ErrorCodes.TooLarge] : e.codes;
    if (r.status !== status) problem('HTTP', c, `HTTP ${r.status}, expected ${status}: ${show(r.text, 300)}`);
    const p = matchAll([j.value], [{ id: null, codes, result: false }]);
    if (p.length) problem('HTTP', c, p.join('; '));
    return;
  }
  if (r.status !== 200) problem('HTTP', c, `HTTP ${r.status}: ${show(r.text, 300)}`);
  for (const p of checkJsonAnswer(j.value, e)) problem('HTTP', c, p);
}

// ---------------------------------------------------------------------------------------------
// the runs

// ---------------------------------------------------------------------------------------------
// the daemon under fuzz

/** A scoped under fuzz, and what it held before. */
export interface FuzzTarget {
  d: Scoped;
  token: string;
  /** The store lives outside the root (on tmpfs when there is one: refusals are audited, and fsyncs are slow). */
  storeDir: string;
  stateBefore: unknown;
  treeBefore: Record<string, string>;
  auditSeqBefore: number;
  /** The daemon's inspector (it runs with `--inspect` on a free loopback port), to measure its heap. */
  inspector: string;
}

/** Everything the daemon keeps, as seen through the API (over the unix socket, as admin). */
async function storeState(d: Scoped): Promise<Record<string, unknown>> {
  const status = await d.ok('daemon.status');
  const scopes = (await d.ok<{ scopes: { name: string }[] }>('scope.list')).scopes.map((s) => s.name);
  const got: Record<string, unknown> = {};
  for (const name of scopes) got[name] = await d.call('scope.get', { name });
  return {
    revision: status.revision,
    plugins: status.plugins,
    scopes: got,
    vars: await d.ok('var.list'),
    units: await d.ok('unit.list'),
    tokens: await d.ok('token.list'),
  };
}

/** Every file under the root, byte for byte (the store, which audits each refusal, is elsewhere). */
const sandboxTree = (d: Scoped) => treeDigest(d.root);

async function storeSize(storeDir: string): Promise<number> {
  let n = 0;
  for (const f of ['scoped.sqlite', 'scoped.sqlite-wal', 'scoped.sqlite-journal'])
    n += await stat(path.join(storeDir, f)).then(
      (s) => s.size,
      () => 0,
    );
  return n;
}

/** A fresh scoped with the limits made explicit, its store outside the root, and what it holds now. */
export async function startTarget(): Promise<FuzzTarget> {
  const storeDir = await mkdtemp(path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'scoped-fuzz-store-'));
  try {
    const d = await scoped({
      postfix: true,
      files: {
        'etc/hostname': 'fuzz.example.net\n',
        'etc/hosts': '127.0.0.1\tlocalhost\n127.0.1.1\tfuzz.example.net fuzz\n',
        'etc/mailname': 'fuzz.example.net\n',
      },
      config: { maxBodyBytes: MAX_BODY, maxBatch: MAX_BATCH, maxWsPayloadBytes: MAX_BODY, store: `sqlite://${storeDir}/scoped.sqlite` },
      nodeArgs: ['--inspect=127.0.0.1:0'],
    });
    const inspector = /Debugger listening on (ws:\/\/\S+)/.exec(d.stderr())?.[1];
    if (!inspector) throw new Error(`scoped started with --inspect printed no inspector address; stderr:\n${d.stderr()}`);
    const audit = await d.ok<{ entries: { seq: number }[] }>('audit.list', { limit: 1_000 });
    const t: FuzzTarget = {
      d,
      token: d.token(),
      storeDir,
      stateBefore: await storeState(d),
      treeBefore: await sandboxTree(d),
      auditSeqBefore: Math.max(0, ...audit.entries.map((e) => e.seq)),
      inspector,
    };
    stats.rss.start = rssBytes(d.pid);
    stats.store.before = await storeSize(storeDir);
    return t;
  } catch (err) {
    await rm(storeDir, { recursive: true, force: true });
    throw err;
  }
}

/** Stop the daemon, remove its root and store; nothing of ours is left running. */
export async function stopTarget(t: FuzzTarget | undefined): Promise<void> {
  if (!t) return;
  const root = t.d.root;
  await t.d.close();
  await rm(t.storeDir, { recursive: true, force: true });
  expect(pidsMentioning(root)).toEqual([]);
}

/** The requests of one seed: the HTTP plan, the WebSocket plan and the seed of the requests without a token. */
export function plans(): { http: Planned[]; ws: Planned[]; unauthSeed: number } {
  console.log(`fuzz seed ${SEED} (0x${SEED.toString(16)}; FUZZ_SEED=${SEED} repeats this run)`);
  const master = makeRng(SEED);
  const http = plan(master, 'http', PER_TRANSPORT, 1_000_000);
  const ws = plan(master, 'ws', PER_TRANSPORT, 2_000_000);
  return { http, ws, unauthSeed: Math.floor(master.next() * 2 ** 32) };
}

const count = (key: string) => (stats.sent[key] = (stats.sent[key] ?? 0) + 1);

/** HTTP: a few workers, each one request at a time on a fresh connection. */
export async function runHttp(t: FuzzTarget, items: Planned[]): Promise<void> {
  const { d, token } = t;
  let next = 0;
  await Promise.all(
    Array.from({ length: HTTP_WORKERS }, async () => {
      while (next < items.length) {
        const c = build(items[next++]!, 'http');
        count(`http ${c.cat}`);
        try {
          checkHttp(c, await httpPost({ port: d.port! }, c.body, { token, ...c.http, timeoutMs: 20_000 }));
        } catch (err) {
          // HTTP lets a server that will not read an oversized body answer 413 and close (RFC 9110
          // 15.5.14); a client still writing that body may then see the connection go first.
          if (c.cat === 'too-large' && /EPIPE|ECONNRESET/.test((err as Error).message)) {
            bump(stats.statuses, 'closed-while-sending-too-large');
            continue;
          }
          problem('HTTP', c, `request failed: ${(err as Error).message}`);
        }
      }
    }),
  );
}

let sentinel = 0;

/**
 * WebSocket: a few connections, each pipelining a window of messages, then a sentinel call;
 * the answers of a window may come in any order and are matched to what is due.
 */
export async function runWs(t: FuzzTarget, items: Planned[]): Promise<void> {
  const { d, token } = t;
  const share = Array.from({ length: WS_CONNECTIONS }, (_, k) => items.filter((_, i) => i % WS_CONNECTIONS === k));
  await Promise.all(
    share.map(async (mine) => {
      let conn = await WsClient.open(d.port!, token);
      const reopen = async () => {
        conn.terminate();
        conn = await WsClient.open(d.port!, token);
      };
      let window: Case[] = [];
      const flush = async () => {
        if (!window.length) return;
        const cases = window;
        window = [];
        const from = conn.messages.length;
        for (const c of cases) conn.ws.send(c.body, { binary: c.frame === 'binary' || typeof c.body !== 'string' });
        const sid = `sentinel-${++sentinel}`;
        conn.send(JSON.stringify({ jsonrpc: '2.0', id: sid, method: 'scope.list', params: { glob: 'net.*' } }));
        const due = cases.filter((c) => c.expect.kind !== 'none').length;
        try {
          await conn.waitFor((m) => m.includes(sid), 30_000, from);
          if (due > 0) await conn.waitFor(() => true, 30_000, from + due);
        } catch (err) {
          problem(
            'WebSocket',
            undefined,
            `${(err as Error).message} (close ${JSON.stringify(conn.isClosed ? await conn.closed : 'none')}) in a window of ${cases.map((c) => `[${c.cat}] ${show(c.body, 80)}`).join(', ')}`,
          );
          await reopen();
          return;
        }
        const got: unknown[] = [];
        for (const m of conn.messages.slice(from)) {
          if (m.includes(sid)) continue;
          const j = parse(m);
          if (!j.ok) problem('WebSocket', undefined, `a message that is not JSON: ${show(m, 300)}`);
          else {
            tally(j.value);
            got.push(j.value);
          }
        }
        const singles = got.filter((g) => !Array.isArray(g));
        const batches = got.filter((g): g is unknown[] => Array.isArray(g));
        const dueOne = cases.flatMap((c) => (c.expect.kind === 'one' ? [{ ...c.expect.due, origin: c }] : []));
        const dueBatch = cases.flatMap((c) => (c.expect.kind === 'batch' ? [c] : []));
        for (const p of matchAll(singles, dueOne))
          problem('WebSocket', undefined, / to \[|among \[/.test(p) ? p : `${p} (window: ${cases.map((c) => `[${c.cat}] ${show(c.body, 60)}`).join(', ')})`);
        for (const b of batches) {
          const at = dueBatch.findIndex((c) => c.expect.kind === 'batch' && checkJsonAnswer(b, c.expect).length === 0);
          if (at >= 0) dueBatch.splice(at, 1);
          else
            problem(
              'WebSocket',
              undefined,
              `a batch answer that fits no batch sent: ${JSON.stringify(b).slice(0, 300)}${dueBatch[0] ? ` (e.g. ${checkJsonAnswer(b, dueBatch[0].expect).join('; ').slice(0, 300)})` : ''}`,
            );
        }
        for (const c of dueBatch) problem('WebSocket', c, 'no answer to this batch');
      };
      for (const p of mine) {
        const c = build(p, 'ws');
        count(`ws ${c.cat}`);
        if (c.expect.kind !== 'ws-close') {
          window.push(c);
          if (window.length >= WS_WINDOW) await flush();
          continue;
        }
        // Over the limit, or not UTF-8: the daemon must close this connection with the right code.
        await flush();
        if (c.frame === 'bad-text') conn.ws.send(c.body, { binary: false });
        else conn.send(c.body);
        const closed = await Promise.race([conn.closed, sleep(10_000).then(() => undefined)]);
        if (closed?.code !== c.expect.code) problem('WebSocket', c, `closed with ${JSON.stringify(closed)}, expected ${c.expect.code}`);
        bump(stats.statuses, `ws-close-${closed?.code}`);
        await reopen();
      }
      await flush();
      // Nothing more may come: no late answer to a notification.
      const n = conn.messages.length;
      await sleep(300);
      if (conn.messages.length !== n)
        problem(
          'WebSocket',
          undefined,
          `late messages nobody asked for: ${conn.messages
            .slice(n)
            .map((m) => show(m))
            .join(', ')}`,
        );
      conn.terminate();
    }),
  );
}

/** Without a token: every request is refused with 401 and -32001, and nothing else. */
export async function runUnauth(t: FuzzTarget, seed: number): Promise<void> {
  const { d, token } = t;
  const r = makeRng(seed);
  const auths = (): string | undefined =>
    r.pick<() => string | undefined>([
      () => undefined,
      () => '',
      () => 'Bearer',
      () => 'Bearer ',
      () => `Bearer ${token.slice(0, -1)}`,
      () => `Bearer ${token}x`,
      () => `Bearer ${token.replace(/[a-z]/, (ch) => ch.toUpperCase())}`,
      () => `Basic ${Buffer.from(`admin:${token}`).toString('base64')}`,
      () => `Token ${token}`,
      () => `Bearer ${token} ${token}`,
      () => token,
      () => `Bearer ${'A'.repeat(5_000)}`,
      () => `Bearer ${Array.from({ length: 1 + r.int(40) }, () => String.fromCharCode(r.chance(0.5) ? 0x21 + r.int(0x5e) : 0x80 + r.int(0x80))).join('')}`,
    ])();
  const cats = ['malformed', 'not-a-request', 'junk-batch', 'random-method', 'hostile-mutation', 'dry-run', 'notification', 'bad-id', 'http-odd'];
  const httpCases = Array.from({ length: UNAUTH_HTTP }, (_, i) => ({ c: BUILDERS[r.pick(cats)]!(r, 3_000_000 + i, 'http'), auth: auths() }));
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < httpCases.length) {
        const { c, auth } = httpCases[next++]!;
        if (c.http?.path && /[^\x21-\x7e]/.test(c.http.path)) delete c.http;
        count('unauth-http');
        try {
          const res = await httpPost({ port: d.port! }, c.body, {
            ...c.http,
            ...(auth === undefined ? {} : { authorization: auth }),
            localAddress: freshPeer(),
          });
          bump(stats.statuses, String(res.status));
          const j = parse(res.text);
          if (res.status !== 401 || !j.ok || !/^Bearer/.test(String(res.headers['www-authenticate'])))
            problem('HTTP without a token', c, `HTTP ${res.status} ${show(res.text, 300)} (authorization ${show(auth ?? '(none)', 60)})`);
          else {
            tally(j.value);
            const p = matchAll([j.value], [{ id: null, codes: [ErrorCodes.Unauthorized], result: false }]);
            if (p.length) problem('HTTP without a token', c, p.join('; '));
          }
        } catch (err) {
          problem('HTTP without a token', c, `request failed: ${(err as Error).message}`);
        }
      }
    }),
  );
  for (let i = 0; i < UNAUTH_WS; i++) {
    count('unauth-ws');
    const auth = auths();
    try {
      const conn = await WsClient.open(d.port!, undefined, { localAddress: freshPeer(), headers: auth === undefined ? {} : { authorization: auth } });
      conn.terminate();
      problem('WebSocket without a token', undefined, `the upgrade was accepted with authorization ${show(auth ?? '(none)', 60)}`);
    } catch (err) {
      const e = err as { status?: number; body?: string; message: string };
      bump(stats.statuses, `ws-upgrade-${e.status}`);
      const j = parse(e.body ?? '');
      if (e.status !== 401 || !j.ok) problem('WebSocket without a token', undefined, `${e.message} ${show(e.body ?? '', 200)}`);
      else {
        tally(j.value);
        const p = matchAll([j.value], [{ id: null, codes: [ErrorCodes.Unauthorized], result: false }]);
        if (p.length) problem('WebSocket without a token', undefined, p.join('; '));
      }
    }
  }
}

/**
 * Warm up, then the rest of the traffic twice. What counts is the live heap after a full garbage
 * collection (asked of the daemon through its inspector) after the first pass and after the
 * second: a leak holds more after the second, while the heap's growth to the heaviest traffic's
 * working size is there after both. RSS is sampled along the way for its peak, which has a
 * ceiling of its own. (Comparing RSS samples alone failed about one run in five: RSS also counts
 * garbage the collector has not reached and pages the allocator keeps.)
 */
export async function measured(t: FuzzTarget, warmUp: () => Promise<unknown>, rest: () => Promise<unknown>): Promise<void> {
  const { d } = t;
  const t0 = Date.now();
  const sampler = setInterval(() => {
    try {
      stats.rss.peak = Math.max(stats.rss.peak, rssBytes(d.pid));
    } catch {
      // gone: the checks below say so
    }
  }, 100);
  try {
    await warmUp();
    await rest();
    await sleep(SETTLE_MS);
    stats.heap.warm = await heapAfterGc(t.inspector);
    await rest();
    await sleep(SETTLE_MS);
    stats.heap.end = await heapAfterGc(t.inspector);
  } finally {
    clearInterval(sampler);
  }
  stats.ms = Date.now() - t0;
  stats.rss.end = rssBytes(d.pid);
  stats.rss.peak = Math.max(stats.rss.peak, stats.rss.end);
  stats.store.after = await storeSize(t.storeDir);
}

/** Print what was sent and got, and check every answer was right: no problem, no internal error, no error logged. */
export function report(t: FuzzTarget): number {
  const { d } = t;
  const total = Object.values(stats.sent).reduce((s, x) => s + x, 0);
  const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)}MB`;
  const per = (t: string) =>
    Object.entries(stats.sent)
      .filter(([k]) => k.startsWith(`${t} `))
      .map(([k, v]) => `${k.slice(t.length + 1)}=${v}`)
      .join(' ');
  const sum = (t: string) =>
    Object.entries(stats.sent)
      .filter(([k]) => k.startsWith(`${t} `))
      .reduce((s, [, v]) => s + v, 0);
  const codes = [...stats.codes]
    .sort((a, b) => b[1] - a[1])
    .map(([c, k]) => `${c}×${k}`)
    .join(' ');
  const statuses = [...stats.statuses]
    .sort()
    .map(([s, k]) => `${s}×${k}`)
    .join(' ');
  console.log(
    `FUZZ seed=0x${SEED.toString(16)} requests=${total} (http=${sum('http')} ws=${sum('ws')} unauth-http=${stats.sent['unauth-http'] ?? 0} unauth-ws=${stats.sent['unauth-ws'] ?? 0}) ` +
      `in ${(stats.ms / 1000).toFixed(1)}s | http: ${per('http')} | ws: ${per('ws')} | answers: results=${stats.results} errors: ${codes} | http/ws status: ${statuses} | ` +
      `rss start=${mb(stats.rss.start)} peak=${mb(stats.rss.peak)} end=${mb(stats.rss.end)} | heap after gc: first pass=${mb(stats.heap.warm)} second=${mb(stats.heap.end)} growth=${mb(stats.heap.end - stats.heap.warm)} | store ${mb(stats.store.before)} -> ${mb(stats.store.after)} | problems=${stats.problems.length}`,
  );
  for (const p of stats.problems.slice(0, 30)) console.log(`PROBLEM ${p}`);
  expect(d.running, `scoped exited: ${JSON.stringify(d.exitStatus)}\n${d.stderr().slice(-3_000)}`).toBe(true);
  expect(stats.problems).toEqual([]);
  // Hostile input is expected input: it is refused with the spec's codes or a domain code, never an internal error.
  expect(stats.codes.get(ErrorCodes.InternalError) ?? 0, 'answers with -32603').toBe(0);
  expect(d.stderr()).not.toMatch(/"level":"error"/);
  return total;
}

/**
 * After a run: the daemon still serves over every transport; the store state, the sandbox files
 * and the history are unchanged; the refusals are counted in a bounded number of rows; the live
 * heap grew by less than HEAP_GROWTH_LIMIT over the second pass and RSS stayed under RSS_CEILING.
 */
export async function expectUnharmed(t: FuzzTarget, refusedCalls: boolean): Promise<void> {
  const { d, token } = t;
  expect(d.running).toBe(true);
  expect(await d.ok('daemon.status')).toMatchObject({ pid: d.pid });
  expect(await d.ok('scope.get', { name: 'net.hostname' })).toMatchObject({ value: 'fuzz.example.net' });
  const http = await httpPost({ port: d.port! }, JSON.stringify({ jsonrpc: '2.0', id: 'after', method: 'scope.get', params: { name: 'net.hostname' } }), {
    token,
  });
  expect(JSON.parse(http.text)).toMatchObject({ id: 'after', result: { value: 'fuzz.example.net' } });
  const ws = await WsClient.open(d.port!, token);
  try {
    expect(await ws.call('daemon.status')).toMatchObject({ result: { pid: d.pid } });
  } finally {
    ws.terminate();
  }
  expect(await storeState(d)).toEqual(t.stateBefore);
  expect(await sandboxTree(d)).toEqual(t.treeBefore);
  const audit = await d.ok<{ entries: { seq: number; outcome: string; action: string }[] }>('audit.list', { limit: 1_000 });
  expect(audit.entries.filter((e) => e.seq > t.auditSeqBefore)).toEqual([]);
  const refused = await d.ok<{ refusals: { actor: string; action: string; count: number }[] }>('audit.list', { limit: 1_000, refused: true });
  const calls = refused.refusals.reduce((n, r) => n + r.count, 0);
  console.log(`audit: no new history entries; ${calls} refused calls in ${refused.refusals.length} rows`);
  if (refusedCalls) expect(calls).toBeGreaterThan(0);
  // At most the default 30 new rows a minute per caller (and a row counting the rest), 1,000 in all.
  expect(refused.refusals.length).toBeLessThanOrEqual(1_000);
  expect(stats.heap.warm).toBeGreaterThan(0);
  expect(stats.heap.end - stats.heap.warm).toBeLessThan(HEAP_GROWTH_LIMIT);
  expect(stats.rss.peak).toBeLessThan(RSS_CEILING);
}
