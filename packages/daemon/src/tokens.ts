import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Role } from '@scoped/protocol';
import { globTest } from './engine.js';
import type { Store } from './store.js';

/** A token as stored: only a hash of its secret. */
export interface StoredToken {
  id: string;
  name: string;
  role: Role;
  scopes: string[];
  hash: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revoked: boolean;
}

/** Who is calling: the admin (unix socket or the token file) or a token with a role. */
export interface Principal {
  name: string;
  role: Role;
  /** Scope globs the principal is limited to; empty means every scope. */
  scopes: string[];
  tokenId?: string;
  /** Set when the caller came in through a Scope GUI session (its id): the session must still be live too. */
  session?: string;
}

export const ADMIN_SOCKET: Principal = { name: 'unix-socket', role: 'admin', scopes: [] };
export const ADMIN_TOKEN: Principal = { name: 'admin-token', role: 'admin', scopes: [] };

const PREFIX = 'scoped_';
const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();
const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Tokens with roles: created with a secret shown once, kept as hashes, checked in constant time. */
export class TokenRegistry {
  private tokens: StoredToken[] = [];
  private dirty = false;
  private readonly flushTimer: NodeJS.Timeout;
  private readonly revokedListeners: ((id: string) => void)[] = [];

  constructor(private readonly store: Store) {
    // Last-use times are kept in memory and written now and then, not on every request.
    this.flushTimer = setInterval(() => void this.flush(), 10_000);
    this.flushTimer.unref();
  }

  async init(): Promise<void> {
    this.tokens = await this.store.loadTokens();
  }

  async create(opts: { role: Role; name?: string; scopes?: string[]; expires?: string }): Promise<{ info: StoredToken; token: string }> {
    const id = randomBytes(4).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const name = opts.name ?? `${opts.role}-${id}`;
    if (this.tokens.some((t) => t.name === name && !t.revoked)) throw new Error(`a token named ${name} exists; revoke it or pick another name`);
    const m = opts.expires ? /^(\d+)([smhd])$/.exec(opts.expires) : null;
    const info: StoredToken = {
      id,
      name,
      role: opts.role,
      scopes: opts.scopes ?? [],
      hash: sha256(secret).toString('hex'),
      createdAt: new Date().toISOString(),
      expiresAt: m ? new Date(Date.now() + Number(m[1]) * UNITS[m[2]!]!).toISOString() : null,
      lastUsedAt: null,
      revoked: false,
    };
    this.tokens.push(info);
    await this.store.saveTokens(this.tokens);
    return { info, token: `${PREFIX}${id}_${secret}` };
  }

  list(): StoredToken[] {
    return this.tokens.map((t) => ({ ...t }));
  }

  /**
   * Call `fn` with a token's id as soon as it is revoked: the transports close its open
   * connections then, instead of at their next message (an idle one would keep its slot).
   */
  onRevoked(fn: (id: string) => void): void {
    this.revokedListeners.push(fn);
  }

  async revoke(idOrName: string): Promise<StoredToken | undefined> {
    const t = this.tokens.find((x) => !x.revoked && (x.id === idOrName || x.name === idOrName));
    if (!t) return undefined;
    t.revoked = true;
    // Its connections end now, even if saving fails below: the token is already refused in memory.
    for (const fn of this.revokedListeners) fn(t.id);
    await this.store.saveTokens(this.tokens);
    return { ...t };
  }

  /** A token that exists and is neither revoked nor expired. */
  private usable(id: string | undefined): StoredToken | undefined {
    const t = this.tokens.find((x) => x.id === id);
    return t && !t.revoked && !(t.expiresAt && Date.parse(t.expiresAt) <= Date.now()) ? t : undefined;
  }

  /** Whether a token is still good (checked again on every message of a long-lived connection). */
  active(id: string): boolean {
    return this.usable(id) !== undefined;
  }

  /** The principal a presented token stands for, or undefined when it is unknown, revoked or expired. */
  verify(presented: string): Principal | undefined {
    const m = /^scoped_([0-9a-f]{8})_([\w-]{16,})$/.exec(presented);
    const t = this.usable(m?.[1]);
    if (!m || !t || !timingSafeEqual(sha256(m[2]!), Buffer.from(t.hash, 'hex'))) return undefined;
    t.lastUsedAt = new Date().toISOString();
    this.dirty = true;
    return { name: t.name, role: t.role, scopes: t.scopes, tokenId: t.id };
  }

  async flush(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    await this.store.saveTokens(this.tokens).catch(() => (this.dirty = true));
  }

  async close(): Promise<void> {
    clearInterval(this.flushTimer);
    await this.flush();
  }
}

const rank: Record<Role, number> = { reader: 0, operator: 1, admin: 2 };

/** Whether a principal's role is at least `role`. */
export function hasRole(p: Principal, role: Role): boolean {
  return rank[p.role] >= rank[role];
}

/** Whether a principal may touch a scope (its globs match, or it has none). */
export function scopeAllowed(p: Principal, scope: string): boolean {
  return p.scopes.length === 0 || p.scopes.some((g) => globTest(g)(scope));
}
