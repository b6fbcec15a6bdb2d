import { createHash, randomBytes } from 'node:crypto';
import type { Principal } from './tokens.js';

/** The name of the Scope GUI's session cookie. */
export const SESSION_COOKIE = 'scoped_session';
/**
 * The session's key goes with the cookie: in this header (GET and DELETE /session) and as a
 * WebSocket subprotocol `scoped-key.KEY`. Browsers send 127.0.0.1's cookies to every port of
 * it, so another program listening on loopback may see the cookie; the key stays in the page's
 * own origin (sessionStorage is kept apart by port), and the cookie alone is no credential.
 */
export const KEY_HEADER = 'x-scoped-key';
export const KEY_PROTOCOL = 'scoped-key.';

/** Sessions kept at once; beyond, the oldest of the token holding the most ends (each needs a login, so this bounds a token holder's logins). */
const MAX_SESSIONS = 1_024;
/** Login codes not yet used at once; beyond, the oldest of the token holding the most is dropped. */
const MAX_CODES = 1_024;
/** Sessions, and unused codes, of one token at once; beyond, its own oldest goes, so no token's logins push out another's. */
const MAX_PER_TOKEN = 32;

/** Whose a code or session is, for the bounds per token: the token's id (the admin token file's and the unix socket's have none). */
const ownerOf = (p: Principal): string => p.tokenId ?? `name:${p.name}`;

/**
 * The key to drop so that `map` may take one more entry of `owner`: that owner's oldest when it
 * holds its share, else (the map full) the oldest entry of the owner holding the most.
 */
function evictionFor<V extends { principal: Principal }>(map: Map<string, V>, owner: string, max: number): string | undefined {
  const counts = new Map<string, number>();
  for (const v of map.values()) counts.set(ownerOf(v.principal), (counts.get(ownerOf(v.principal)) ?? 0) + 1);
  let victim: string | undefined;
  if ((counts.get(owner) ?? 0) >= MAX_PER_TOKEN) victim = owner;
  else if (map.size >= max) victim = [...counts].reduce((a, b) => (b[1] > a[1] ? b : a))[0];
  if (victim === undefined) return undefined;
  for (const [key, v] of map) if (ownerOf(v.principal) === victim) return key;
  return undefined;
}

const digest = (s: string): string => createHash('sha256').update(s).digest('hex');

interface Session {
  /** An id of its own, for the connections it opened (never the cookie, which is kept only as a hash). */
  id: string;
  /** The hash of the session's key, which every use sends with the cookie. */
  keyHash: string;
  principal: Principal;
  expiresAt: number;
  /** The session whose gui.login made this one: this one ends with it, and no later. */
  parent?: string;
}

/**
 * The Scope GUI's logins: one-time codes (gui.login, for `cpcmd gui`) and the sessions they,
 * or a pasted token, are traded for. A session stands for the principal of the token that
 * made it (same role and scopes) and ends at logout, when that token is revoked or expires,
 * after guiSessionTtlMs, or when scoped stops (sessions live in memory only). Codes and
 * cookies are 256 random bits and kept only as hashes.
 */
export class GuiSessions {
  private readonly codes = new Map<string, { principal: Principal; expiresAt: number }>();
  private readonly sessions = new Map<string, Session>();
  /** Each session's cookie hash, by the session's id. */
  private readonly keyOf = new Map<string, string>();
  private readonly endedListeners: ((id: string) => void)[] = [];

  constructor(
    private readonly loginTtlMs: number,
    private readonly sessionTtlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** A one-time login code for this principal, good once for loginTtlMs. */
  issueCode(principal: Principal): { code: string; expiresAt: number } {
    this.sweep();
    const drop = evictionFor(this.codes, ownerOf(principal), MAX_CODES);
    if (drop !== undefined) this.codes.delete(drop);
    const code = randomBytes(32).toString('base64url');
    const expiresAt = this.now() + this.loginTtlMs;
    this.codes.set(digest(code), { principal: { ...principal }, expiresAt });
    return { code, expiresAt };
  }

  /** The principal a code was issued for; the code is gone after this, used or not. Undefined when unknown, used or expired. */
  redeemCode(code: string): Principal | undefined {
    const key = digest(code);
    const entry = this.codes.get(key);
    this.codes.delete(key);
    if (!entry || entry.expiresAt <= this.now()) return undefined;
    return entry.principal;
  }

  /**
   * A new session for a principal: the cookie's value and the key (each shown once, to the
   * browser), and the session's id. A principal that is itself a session (a code its gui.login asked for) makes a
   * session that ends with that one and expires no later: a session cannot outlive its logout
   * or guiSessionTtlMs by minting another.
   */
  open(principal: Principal): { cookie: string; key: string; id: string } {
    this.sweep();
    const drop = evictionFor(this.sessions, ownerOf(principal), MAX_SESSIONS);
    if (drop !== undefined) this.endKey(drop);
    const cookie = randomBytes(32).toString('base64url');
    const key = randomBytes(32).toString('base64url');
    const id = randomBytes(8).toString('hex');
    const { session: parentId, ...rest } = principal;
    const parent = parentId === undefined ? undefined : this.sessions.get(this.keyOf.get(parentId) ?? '');
    // A parent already gone (it cannot be: the login checked it just before) makes a session already expired.
    const limit = parentId === undefined ? Number.POSITIVE_INFINITY : (parent?.expiresAt ?? this.now());
    const session: Session = { id, keyHash: digest(key), principal: { ...rest, session: id }, expiresAt: Math.min(this.now() + this.sessionTtlMs, limit) };
    if (parent !== undefined) session.parent = parent.id;
    this.sessions.set(digest(cookie), session);
    this.keyOf.set(id, digest(cookie));
    return { cookie, key, id };
  }

  /**
   * The live session that one of these cookie values holds and whose key this is (a browser may
   * send several cookies of that name: one another port set cannot shadow the page's own).
   */
  private find(cookies: readonly string[], key: string | undefined): [string, Session] | undefined {
    if (!key) return undefined;
    const keyHash = digest(key);
    for (const cookie of cookies) {
      const k = digest(cookie);
      const s = this.sessions.get(k);
      if (s && s.keyHash === keyHash) return [k, s];
    }
    return undefined;
  }

  /** The principal of a live session, by its cookie and its key: neither alone is enough. */
  principalOf(cookies: readonly string[], key: string | undefined): Principal | undefined {
    const found = this.find(cookies, key);
    if (!found) return undefined;
    if (found[1].expiresAt <= this.now()) return void this.endKey(found[0]);
    return found[1].principal;
  }

  /** Whether the session with this id is still live (checked on every message of its WebSockets). */
  alive(id: string): boolean {
    const s = this.sessions.get(this.keyOf.get(id) ?? '');
    return s !== undefined && s.expiresAt > this.now();
  }

  /** Log out: end the session this cookie and key hold, if any. */
  logout(cookies: readonly string[], key: string | undefined): void {
    const found = this.find(cookies, key);
    if (found) this.endKey(found[0]);
  }

  /** A token was revoked: its sessions end, and its codes can no longer be used. */
  endToken(tokenId: string): void {
    for (const [key, c] of this.codes) if (c.principal.tokenId === tokenId) this.codes.delete(key);
    for (const [key, s] of this.sessions) if (s.principal.tokenId === tokenId) this.endKey(key);
  }

  /** Call `fn` with a session's id when it ends (its WebSockets are closed then). */
  onEnded(fn: (id: string) => void): void {
    this.endedListeners.push(fn);
  }

  private endKey(key: string): void {
    const s = this.sessions.get(key);
    if (!s) return;
    this.sessions.delete(key);
    this.keyOf.delete(s.id);
    for (const fn of this.endedListeners) fn(s.id);
    // The sessions it minted end with it.
    for (const [k, child] of this.sessions) if (child.parent === s.id) this.endKey(k);
  }

  /** Forget expired codes and sessions. */
  private sweep(): void {
    const now = this.now();
    for (const [key, c] of this.codes) if (c.expiresAt <= now) this.codes.delete(key);
    for (const [key, s] of this.sessions) if (s.expiresAt <= now) this.endKey(key);
  }
}

/** Every value of one cookie in a Cookie header (a browser sends one per path and domain that set it). */
export function cookieValues(header: string | undefined, name: string): string[] {
  const out: string[] = [];
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim());
  }
  return out.slice(0, 8);
}

/** The session key a WebSocket upgrade offers as its subprotocol `scoped-key.KEY`, if any. */
export function keyFromProtocols(header: string | undefined): string | undefined {
  for (const p of (header ?? '').split(',')) {
    const v = p.trim();
    if (v.startsWith(KEY_PROTOCOL) && v.length > KEY_PROTOCOL.length) return v.slice(KEY_PROTOCOL.length);
  }
  return undefined;
}
