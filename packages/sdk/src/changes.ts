/**
 * The typed changes a unit's plan returns. Units never touch the machine while planning;
 * the engine carries out the changes through the system adapters, with a snapshot for
 * rollback. Paths are absolute as seen inside the root (`/etc/hostname`), never host paths.
 */
export type Change = (FileChange | FileRemoval | PostconfChange | MasterBlockChange | PostmapChange | ServiceChange | KernelHostnameChange) & {
  /** The var this change serves, for drift reports that name it. */
  var?: string;
  /**
   * The change carries a secret (a credentials file, its postmap, a parameter holding a
   * password): plans, drift and logs never show its content, and the output of the tool that
   * carries it out is not passed on. A change serving a var that is secret as a whole counts
   * as secret without this.
   */
  secret?: boolean;
};

/** Write a whole file atomically with this mode. */
export interface FileChange {
  kind: 'file';
  path: string;
  content: string;
  mode: number;
  /**
   * The user (a name, such as `_rspamd`) that owns the file, with its primary group: set before
   * the file is renamed into place, so a 0600 key is the daemon's from its first byte. Root when absent.
   */
  owner?: string;
  /** What the file holds now (null when absent), for the plan and for drift. */
  current: string | null;
}

/** Remove a file (and nothing when it is already gone). */
export interface FileRemoval {
  kind: 'file.remove';
  path: string;
  current: string | null;
}

/** Set (value) or remove (null) one main.cf parameter. All of one converge go into one write. */
export interface PostconfChange {
  kind: 'postconf';
  param: string;
  value: string | null;
  current: string | null;
}

/**
 * Set (lines) or take away (null) one of scoped's marked blocks in master.cf (see master-cf.ts),
 * named by what it serves. It is applied to master.cf as it is when the engine writes, so
 * blocks of several units in one converge all land, and the operator's lines stay byte for byte.
 */
export interface MasterBlockChange {
  kind: 'master.block';
  /** The block's name, as in its marker lines: `spam filter`, `transport`. */
  name: string;
  lines: readonly string[] | null;
  /** The block's lines now (null when master.cf has none), for the plan and for drift. */
  current: readonly string[] | null;
}

/** Rebuild the indexed map of a source file with postmap, using Postfix's default map type. */
export interface PostmapChange {
  kind: 'postmap';
  path: string;
  /** Why: the source file this map indexes changed, or the database is missing. */
  reason: string;
}

/** Tell a service to pick up its configuration. The engine skips it when the service is not running. */
export interface ServiceChange {
  kind: 'service';
  service: string;
  action: 'reload' | 'restart' | 'start' | 'stop';
}

/** Set the kernel's hostname (only when the daemon is configured to). */
export interface KernelHostnameChange {
  kind: 'kernel-hostname';
  name: string;
  current: string;
}

const show = (v: string | null): string => (v === null ? '(unset)' : JSON.stringify(v));

/** The file a change writes, if any, as seen inside the root. */
export function changeTarget(change: Change): string {
  switch (change.kind) {
    case 'file':
    case 'file.remove':
    case 'postmap':
      return change.path;
    case 'postconf':
      return `main.cf:${change.param}`;
    case 'master.block':
      return `master.cf:${change.name}`;
    case 'service':
      return `service:${change.service}`;
    case 'kernel-hostname':
      return 'kernel:hostname';
  }
}

/**
 * A one-line human description of a change, safe to show: built from the change's fields, with
 * the content of a secret change left out (never cut out of the text afterwards).
 */
export function describeChange(change: Change): string {
  switch (change.kind) {
    case 'file': {
      const what = change.current === null ? 'create' : 'rewrite';
      const mode = `mode ${change.mode.toString(8).padStart(4, '0')}`;
      if (change.secret) return `${what} ${change.path} (${mode}, content redacted)`;
      return `${what} ${change.path} (${mode}): ${show(change.current)} -> ${show(change.content)}`;
    }
    case 'file.remove':
      return `remove ${change.path}`;
    case 'postconf':
      if (change.secret) return `main.cf ${change.param}: ${change.value === null ? 'unset' : change.current === null ? 'set' : 'changed'} (value redacted)`;
      return `main.cf ${change.param}: ${show(change.current)} -> ${show(change.value)}`;
    case 'master.block': {
      const block = (lines: readonly string[] | null) => (lines === null ? '(none)' : JSON.stringify(lines.join('\n')));
      if (change.secret) return `master.cf block "${change.name}": ${change.lines === null ? 'remove' : 'write'} (content redacted)`;
      return `master.cf block "${change.name}": ${block(change.current)} -> ${block(change.lines)}`;
    }
    case 'postmap':
      return `postmap ${change.path} (${change.reason})`;
    case 'service':
      return `${change.action} ${change.service} if running`;
    case 'kernel-hostname':
      if (change.secret) return 'kernel hostname (value redacted)';
      return `kernel hostname: ${show(change.current)} -> ${show(change.name)}`;
  }
}

/** Expected and actual values of a change, for drift reports; secrets are redacted. */
export function changeDrift(change: Change, redacted: string): { expected: string | null; actual: string | null } {
  switch (change.kind) {
    case 'file':
      return change.secret ? { expected: redacted, actual: change.current === null ? null : redacted } : { expected: change.content, actual: change.current };
    case 'file.remove':
      return { expected: null, actual: change.secret ? redacted : change.current };
    case 'postconf':
      return change.secret
        ? { expected: change.value === null ? null : redacted, actual: change.current === null ? null : redacted }
        : { expected: change.value, actual: change.current };
    case 'master.block': {
      const text = (lines: readonly string[] | null) => (lines === null ? null : change.secret ? redacted : lines.join('\n'));
      return { expected: text(change.lines), actual: text(change.current) };
    }
    case 'postmap':
      return { expected: 'database up to date', actual: change.reason };
    case 'service':
      if (change.action === 'start') return { expected: 'running', actual: 'not running' };
      return { expected: `${change.action}ed`, actual: null };
    case 'kernel-hostname':
      return change.secret ? { expected: redacted, actual: redacted } : { expected: change.name, actual: change.current };
  }
}
