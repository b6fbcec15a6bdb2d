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

/** Trade a code or a token for the session cookie, answering who it is; throws the server's reason when it refuses. */
export async function logIn(credential: { code: string } | { token: string }): Promise<Session> {
  const r = await fetch('/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(credential),
    credentials: 'same-origin',
  });
  if (r.ok) return (await r.json()) as Session;
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
  const r = await fetch('/session', { credentials: 'same-origin' });
  if (!r.ok) return null;
  return (await r.json()) as Session;
}

export async function logOut(): Promise<void> {
  await fetch('/session', { method: 'DELETE', credentials: 'same-origin' });
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
