/**
 * The page's login: a one-time code from `cpcmd gui`'s address, or a pasted token, traded for an
 * HttpOnly session cookie. Neither is kept anywhere: the code leaves the address bar before
 * anything else runs, and the token lives only in the login form until it is posted.
 */

/** Who the session speaks for, as the login and GET /session answer, with the scopes it may see (scope.list's answer). */
export interface Session {
  name: string;
  role: 'admin' | 'operator' | 'reader';
  scopes: string[];
  scopeList: { name: string; summary: string }[];
}

/** The code in `#login=CODE`, removed from the address bar and the history entry at once; null when there is none. */
export function takeLoginCode(): string | null {
  const m = /^#login=([^&]+)$/.exec(location.hash);
  if (m === null) return null;
  history.replaceState(null, '', location.pathname);
  return decodeURIComponent(m[1]!);
}

/**
 * The session's key, which goes with the cookie on every use. Browsers send 127.0.0.1's cookies
 * to any port of it; sessionStorage stays with this page's own origin (port included) and tab,
 * so a program on another loopback port that sees the cookie still has no session.
 */
const KEY = 'scoped-session-key';
export const sessionKey = (): string | null => sessionStorage.getItem(KEY);
export const KEY_PROTOCOL = 'scoped-key.';

/** Trade a code or a token for the session cookie and key, answering who it is; throws the server's reason when it refuses. */
export async function logIn(credential: { code: string } | { token: string }): Promise<Session> {
  const r = await fetch('/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(credential),
    credentials: 'same-origin',
  });
  if (r.ok) {
    const { key, ...session } = (await r.json()) as Session & { key: string };
    sessionStorage.setItem(KEY, key);
    return session;
  }
  let reason = `scoped refused the login (HTTP ${r.status})`;
  try {
    const body = (await r.json()) as { error?: unknown };
    if (typeof body.error === 'string') reason = body.error;
  } catch {
    // no JSON body: the status says enough
  }
  throw new Error(reason);
}

/** The current session, or null when there is none (no cookie, an expired or revoked one). */
export async function currentSession(): Promise<Session | null> {
  const key = sessionKey();
  if (key === null) return null;
  const r = await fetch('/session', { credentials: 'same-origin', headers: { 'X-Scoped-Key': key } });
  if (!r.ok) return null;
  return (await r.json()) as Session;
}

export async function logOut(): Promise<void> {
  const key = sessionKey();
  sessionStorage.removeItem(KEY);
  await fetch('/session', { method: 'DELETE', credentials: 'same-origin', headers: key === null ? {} : { 'X-Scoped-Key': key } });
}

/** Whether a scope glob (`*`, `?`) of a token covers `name`. */
export function globMatches(glob: string, name: string): boolean {
  const re = new RegExp(
    `^${glob
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return re.test(name);
}

/** Whether the session may see the scope: an admin or an empty scope list sees every scope. */
export function mayUse(session: Session, scope: string): boolean {
  return session.role === 'admin' || session.scopes.length === 0 || session.scopes.some((g) => globMatches(g, scope));
}
