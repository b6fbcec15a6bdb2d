/**
 * What the page does before anything else is evaluated (main.tsx imports this first, before
 * Preact and the pages): the login code leaves the address bar and its trade for the session
 * cookie starts. The login answers who the session is and the scopes it may see, so the first
 * screen needs no other call; the WebSocket opens after it.
 */
import { type Session, logIn, takeLoginCode } from './session.js';

const code = takeLoginCode();

/** The code's login: its session, or its error message; null when the address held no code. */
export const codeLogin: Promise<Session | { error: string } | null> =
  code === null
    ? Promise.resolve(null)
    : logIn({ code }).then(
        (session) => session,
        (e: Error) => ({ error: e.message }),
      );
