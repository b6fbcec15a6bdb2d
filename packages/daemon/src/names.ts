import { ErrorCodes, RpcError } from '@scoped/protocol';

/**
 * The grammar of every kind of name a caller can give. A name that fails it is refused without
 * being repeated, so no message carries caller text that is not a name (escape sequences, a
 * guessed password, a megabyte of junk) back to a terminal, a log or the audit trail.
 */
const GRAMMARS = {
  scope: {
    noun: 'scope name',
    code: ErrorCodes.ScopeNotFound,
    test: /^[a-z][a-z0-9]*\.[a-z][a-z0-9-]*$/,
    shape: 'group.kebab-name, such as mail.smart-host',
    list: 'cpcmd scope:list shows them',
  },
  var: {
    noun: 'var name',
    code: ErrorCodes.ScopeNotFound,
    test: /^[a-z][a-z0-9_]*$/,
    shape: 'snake_case, such as postfix_relay_mynetworks',
    list: 'cpcmd var:list shows them',
  },
  unit: {
    noun: 'unit name',
    code: ErrorCodes.ScopeNotFound,
    test: /^[a-z][a-z0-9-]*\/[a-z][a-z0-9-]*$/,
    shape: 'area/name, such as net/hostname',
    list: 'cpcmd scope:info SCOPE names the units a scope drives',
  },
  job: {
    noun: 'job id',
    code: ErrorCodes.NotFound,
    test: /^job-[0-9a-f]{12}$/,
    shape: 'job- and 12 hex digits, as --no-wait printed it',
    list: 'jobs are kept until the daemon restarts',
  },
  token: {
    noun: 'token id or name',
    code: ErrorCodes.NotFound,
    test: /^[\w.@-]+$/,
    shape: 'letters, digits, and . _ @ -',
    list: 'cpcmd token:list shows them',
  },
} as const;

export type NameKind = keyof typeof GRAMMARS;

/** Longest name ever echoed; every real name is far shorter. */
const MAX_NAME = 100;

/** Whether `name` is a well-formed name of this kind (short enough to repeat in a message). */
export function isName(kind: NameKind, name: unknown): name is string {
  return typeof name === 'string' && name.length <= MAX_NAME && GRAMMARS[kind].test.test(name);
}

/**
 * The refusal for a name that fails its grammar: not found (nothing can have that name), with
 * what a name looks like, never what was sent.
 */
export function badName(kind: NameKind): RpcError {
  const g = GRAMMARS[kind];
  return new RpcError(g.code, `that is not a ${g.noun}, so nothing has it: a ${g.noun} is ${g.shape} (${g.list})`);
}

/** The params of each method that name something, and what they name. */
const NAMED: Record<string, readonly [param: string, kind: NameKind][]> = {
  'scope.info': [['name', 'scope']],
  'scope.get': [['name', 'scope']],
  'scope.set': [['name', 'scope']],
  'scope.reset': [['name', 'scope']],
  'scope.adopt': [['name', 'scope']],
  'scope.check': [['name', 'scope']],
  'var.get': [['name', 'var']],
  'var.set': [['name', 'var']],
  'unit.converge': [['units', 'unit']],
  'job.get': [['id', 'job']],
  'job.cancel': [['id', 'job']],
  'token.revoke': [['id', 'token']],
};

/**
 * Refuse a call whose names fail their grammar, before anything (permissions, handlers) can
 * repeat them. Params of the wrong type are left to the method's schema.
 */
export function checkNames(method: string, params: Record<string, unknown>): void {
  for (const [param, kind] of NAMED[method] ?? []) {
    const value = params[param];
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) if (typeof v === 'string' && !isName(kind, v)) throw badName(kind);
  }
}
