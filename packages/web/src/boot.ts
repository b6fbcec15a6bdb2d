/**
 * What the page does before anything else is evaluated (main.tsx imports this first, before
 * Preact and the pages): the login code leaves the address bar, its trade for the session cookie
 * starts, and right after it the scope list the first page shows is asked for over HTTP, while
 * the WebSocket is still being opened.
 */
import { logIn, takeLoginCode } from './session.js';

const code = takeLoginCode();

/** The code's login, settled to its error message, or null (no code, or logged in). */
export const codeLogin: Promise<string | null> =
  code === null
    ? Promise.resolve(null)
    : logIn({ code }).then(
        () => null,
        (e: Error) => e.message,
      );

export interface ScopeList {
  scopes: { name: string; summary: string }[];
}

/** One JSON-RPC call over HTTP with the session cookie (POST /rpc from the page's own origin); null when it fails. */
async function httpCall<T>(method: string): Promise<T | null> {
  const r = await fetch('/rpc', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: {} }),
    credentials: 'same-origin',
  });
  if (!r.ok) return null;
  const answer = (await r.json()) as { result?: T };
  return answer.result ?? null;
}

let firstList: Promise<ScopeList | null> | null = codeLogin.then(() => httpCall<ScopeList>('scope.list')).catch(() => null);

/** The scope list asked for at start, once (null after: the scope list page asks the socket then); it settles to null when that ask failed. */
export function takeFirstList(): Promise<ScopeList | null> | null {
  const p = firstList;
  firstList = null;
  return p;
}
