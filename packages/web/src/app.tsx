/**
 * The page's shell: the login, then one WebSocket for everything, a live event feed kept for the
 * Events page and for Apply's progress, and the page the address's hash names.
 */
import { createContext } from 'preact';
import { useContext, useEffect, useRef, useState } from 'preact/hooks';
import { AuditPage } from './pages/audit.js';
import { EventsPage } from './pages/events.js';
import { LoginPage } from './pages/login.js';
import { ScopePage } from './pages/scope.js';
import { ScopesPage } from './pages/scopes.js';
import { TokensPage } from './pages/tokens.js';
import { type EventMessage, Rpc } from './rpc.js';
import { codeLogin } from './boot.js';
import { type Session, currentSession, logIn, logOut } from './session.js';

/** What every page may use. */
export interface AppState {
  rpc: Rpc;
  session: Session;
  /** The events received since the page loaded, newest last (the last 500). */
  events: EventMessage[];
}

const Ctx = createContext<AppState | null>(null);
export const useApp = (): AppState => useContext(Ctx)!;

/** The topics the feed follows. */
const TOPICS = ['scope.changed', 'unit.converged', 'drift.detected', 'job.*'];
const KEEP = 500;

interface Opened {
  session: Session;
  rpc: Rpc;
}

/** The socket the page uses now, and what to do when it closes (set by the App). */
let liveRpc: Rpc | null = null;
let liveClosed: () => void = () => {};

/**
 * Who the session is (as the login answered it, or GET /session asked now), and its socket,
 * started at once (calls wait for it to open); null when there is no session. The page shows as
 * soon as the session is known.
 */
async function openSession(known?: Session): Promise<Opened | null> {
  const rpc: Rpc = Rpc.connect(() => {
    if (rpc === liveRpc) liveClosed();
  });
  const session = known ?? (await currentSession().catch(() => null));
  if (session === null) {
    rpc.close();
    return null;
  }
  return { session, rpc };
}

/** The first look for a session starts with the script too: the code's login, or the cookie a reload still has. */
const firstOpen = codeLogin.then(async (login) => {
  const failed = login !== null && 'error' in login ? login.error : null;
  const known = login !== null && !('error' in login) ? login : undefined;
  return { failed, opened: await openSession(known).catch((e: Error) => e) };
});

type Route = { page: 'scopes' } | { page: 'scope'; name: string } | { page: 'events' } | { page: 'audit' } | { page: 'tokens' };

function route(hash: string): Route {
  const m = /^#\/scope\/(.+)$/.exec(hash);
  if (m) return { page: 'scope', name: decodeURIComponent(m[1]!) };
  if (hash === '#/events') return { page: 'events' };
  if (hash === '#/audit') return { page: 'audit' };
  if (hash === '#/tokens') return { page: 'tokens' };
  return { page: 'scopes' };
}

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

export function App() {
  const [state, setState] = useState<AppState | null>(null);
  const [status, setStatus] = useState<'starting' | 'login' | 'ready'>('starting');
  const [error, setError] = useState<string | null>(null);
  const events = useRef<EventMessage[]>([]);
  const [, setTick] = useState(0);

  /** Make an opened session the page's: its events feed the list, and its socket's end shows the login. */
  function goLive({ session, rpc }: Opened): void {
    liveRpc = rpc;
    liveClosed = () => {
      setState(null);
      setError('The connection to scoped closed (a logout, a revoked token or a restart). Log in again.');
      setStatus('login');
    };
    // The socket may have failed while the session was read.
    if (rpc.closed) return liveClosed();
    rpc.onEvent((e) => {
      events.current = [...events.current.slice(-(KEEP - 1)), e];
      setState((s) => (s === null ? s : { ...s, events: events.current }));
      setTick((t) => t + 1);
    });
    // The feed follows from now on; the pages need not wait for the subscription's answer.
    rpc.call('events.subscribe', { topics: TOPICS }).catch((e) => setError(`The live feed is off: ${(e as Error).message}`));
    setState({ rpc, session, events: events.current });
    setError(null);
    setStatus('ready');
  }

  async function connect(known?: Session): Promise<void> {
    const opened = await openSession(known);
    if (opened === null) setStatus('login');
    else goLive(opened);
  }

  useEffect(() => {
    firstOpen.then(({ failed, opened }) => {
      if (failed !== null) setError(failed);
      if (opened instanceof Error) {
        setError(opened.message);
        setStatus('login');
      } else if (opened === null) setStatus('login');
      else goLive(opened);
    });
  }, []);

  if (status === 'starting') return <p class="loading">Connecting to scoped…</p>;
  if (status === 'login' || state === null) {
    return (
      <LoginPage
        error={error}
        onToken={async (token) => {
          await connect(await logIn({ token }));
        }}
      />
    );
  }
  return (
    <Ctx.Provider value={state}>
      <Shell
        onLogout={async () => {
          await logOut();
          state.rpc.close();
        }}
      />
    </Ctx.Provider>
  );
}

function Shell({ onLogout }: { onLogout: () => void }) {
  const { session } = useApp();
  const r = route(useHash());
  const link = (href: string, text: string, current: boolean) => (
    <li>
      <a href={href} aria-current={current ? 'page' : undefined}>
        {text}
      </a>
    </li>
  );
  return (
    <>
      <header>
        <p class="brand">scoped</p>
        <nav aria-label="Pages">
          <ul>
            {link('#/', 'Scopes', r.page === 'scopes' || r.page === 'scope')}
            {link('#/events', 'Events', r.page === 'events')}
            {link('#/audit', 'Audit', r.page === 'audit')}
            {session.role === 'admin' && link('#/tokens', 'Tokens', r.page === 'tokens')}
          </ul>
        </nav>
        <p class="who">
          {session.name} ({session.role})
          <button type="button" class="secondary" onClick={onLogout}>
            Log out
          </button>
        </p>
      </header>
      <main>
        {r.page === 'scopes' && <ScopesPage />}
        {r.page === 'scope' && <ScopePage key={r.name} name={r.name} />}
        {r.page === 'events' && <EventsPage />}
        {r.page === 'audit' && <AuditPage />}
        {r.page === 'tokens' && (session.role === 'admin' ? <TokensPage /> : <p>Only an admin's session manages tokens.</p>)}
      </main>
    </>
  );
}
