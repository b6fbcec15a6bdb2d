import { useEffect, useState } from 'preact/hooks';
import { useApp } from '../app.js';
import { mayUse } from '../session.js';
import { Heading, messageOf } from './heading.js';

interface Drift {
  scope?: string;
  unit: string;
  target: string;
}

/** Every scope the session may use, with a search box and a badge where the system drifted from the vars. */
export function ScopesPage() {
  const { rpc, session, events } = useApp();
  // Shown at once from what the login answered; asked again over the socket in case plugins changed since.
  const [scopes, setScopes] = useState<{ name: string; summary: string }[]>(() => session.scopeList.filter((s) => mayUse(session, s.name)));
  const [drift, setDrift] = useState<Map<string, number>>(new Map());
  const [error, setError] = useState<string | null>(null);
  const [query, setQuery] = useState('');
  const changes = events.filter((e) => e.topic === 'scope.changed' || e.topic === 'drift.detected').length;

  useEffect(() => {
    rpc
      .call<{ scopes: { name: string; summary: string }[] }>('scope.list')
      .then((r) => setScopes(r.scopes.filter((s) => mayUse(session, s.name))))
      .catch((e) => setError(messageOf(e)));
  }, []);
  useEffect(() => {
    rpc
      .call<{ drift: Drift[] }>('scope.check')
      .then((r) => {
        const m = new Map<string, number>();
        for (const d of r.drift) if (d.scope !== undefined) m.set(d.scope, (m.get(d.scope) ?? 0) + 1);
        setDrift(m);
      })
      .catch(() => setDrift(new Map()));
  }, [changes]);

  const q = query.trim().toLowerCase();
  const shown = scopes.filter((s) => q === '' || s.name.toLowerCase().includes(q) || s.summary.toLowerCase().includes(q));
  return (
    <>
      <Heading>Scopes</Heading>
      <div class="field search">
        <label for="search">Search scopes</label>
        <input id="search" type="search" value={query} onInput={(e) => setQuery(e.currentTarget.value)} />
      </div>
      {error !== null && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <p class="count" aria-live="polite">
        {`${shown.length} of ${scopes.length} scopes`}
      </p>
      <ul class="scopes">
        {shown.map((s) => {
          const n = drift.get(s.name) ?? 0;
          return (
            <li key={s.name}>
              <a href={`#/scope/${encodeURIComponent(s.name)}`}>{s.name}</a>
              {n > 0 && <span class="badge drift">drift: {n}</span>}
              <p>{s.summary}</p>
            </li>
          );
        })}
      </ul>
    </>
  );
}
