import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { ErrorCodes } from '@scoped/protocol';
import { writeFileAtomic } from '@scoped/system';
import type { GuiSessions } from './gui.js';
import type { FailureLimiter } from './ratelimit.js';
import { ADMIN_TOKEN, type Principal, type TokenRegistry } from './tokens.js';

/** The admin bearer token for TCP: read from its file, or created there (mode 0600) when missing. */
export async function loadOrCreateToken(file: string): Promise<string> {
  if (existsSync(file)) {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length < 16) throw new Error(`the token file ${file} holds no usable token (16 characters at least)`);
    return token;
  }
  const token = randomBytes(32).toString('base64url');
  await writeFileAtomic(file, `${token}\n`, 0o600);
  return token;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** What the gate decided about a TCP request. */
export type GateResult = { ok: true; principal: Principal } | { ok: false; status: 401 | 429; code: number; message: string; retryAfter?: number };

/**
 * The door of the TCP transports: a bearer token (the admin token file's, or one made with
 * token:create) or nothing, with failed attempts limited per peer address.
 */
export class Gate {
  constructor(
    private readonly adminToken: string,
    private readonly tokens: TokenRegistry,
    private readonly limiter: FailureLimiter,
    private readonly sessions?: GuiSessions,
  ) {}

  /** Whether a principal let in earlier may still act (its token not revoked or expired since, its GUI session not ended). */
  stillValid(p: Principal): boolean {
    if (p.tokenId !== undefined && !this.tokens.active(p.tokenId)) return false;
    return p.session === undefined || this.sessions?.alive(p.session) === true;
  }

  /** The principal of a live Scope GUI session, by its cookie and its key (nothing is counted against anyone). */
  sessionPrincipal(cookies: readonly string[], key: string | undefined): Principal | undefined {
    const principal = this.sessions?.principalOf(cookies, key);
    return principal && this.stillValid(principal) ? principal : undefined;
  }

  /** The Scope GUI's session cookie and key, for a WebSocket upgrade without an Authorization header; a failure counts against the peer. */
  session(cookies: readonly string[], key: string | undefined, peer: string): GateResult {
    const principal = this.sessionPrincipal(cookies, key);
    if (principal) return { ok: true, principal };
    return (
      this.limited(peer) ?? {
        ok: false,
        status: 401,
        code: ErrorCodes.Unauthorized,
        message:
          cookies.length === 0
            ? 'Unauthorized: send Authorization: Bearer TOKEN, or log in to the Scope GUI first (cpcmd gui)'
            : 'Unauthorized: the Scope GUI session has ended; log in again (cpcmd gui)',
      }
    );
  }

  /**
   * A Scope GUI login: a one-time code from gui.login, or a pasted token. Failures count
   * against the peer like failed bearer tokens.
   */
  login(what: { code: string } | { token: string }, peer: string): GateResult {
    if ('token' in what) return this.check(`Bearer ${what.token}`, peer);
    const principal = this.sessions?.redeemCode(what.code);
    if (principal && this.stillValid(principal)) return { ok: true, principal };
    return (
      this.limited(peer) ?? {
        ok: false,
        status: 401,
        code: ErrorCodes.Unauthorized,
        message: 'this login address was used or has expired; run cpcmd gui again',
      }
    );
  }

  /** 429 when the peer is being limited; else counts this failure and answers undefined. */
  private limited(peer: string): Extract<GateResult, { ok: false }> | undefined {
    const wait = this.limiter.blockedFor(peer);
    if (wait > 0)
      return { ok: false, status: 429, code: ErrorCodes.Busy, message: `Too many failed logins from ${peer}: try again in ${wait} s`, retryAfter: wait };
    this.limiter.fail(peer);
    return undefined;
  }

  /**
   * A valid token always gets in, even from an address that is being limited: TCP is loopback
   * only, so every local process shares one address, and a local user's wrong guesses must not
   * lock the admin out. Tokens are 256 random bits, so guessing is hopeless anyway; the limit
   * answers the guesser 429 and keeps its noise bounded.
   */
  check(authorization: string | undefined, peer: string): GateResult {
    const presented = bearer(authorization);
    const principal = presented === undefined ? undefined : tokenMatches(presented, this.adminToken) ? ADMIN_TOKEN : this.tokens.verify(presented);
    if (principal) return { ok: true, principal };
    return (
      this.limited(peer) ?? {
        ok: false,
        status: 401,
        code: ErrorCodes.Unauthorized,
        message: presented === undefined ? 'Unauthorized: send Authorization: Bearer TOKEN' : 'Unauthorized: the token is unknown, revoked or expired',
      }
    );
  }
}

/** Compares a presented bearer token with the expected one in constant time. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (!presented) return false;
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The token of an `Authorization: Bearer …` header. */
export function bearer(header: string | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}
