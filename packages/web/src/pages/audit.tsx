import { useEffect, useState } from 'preact/hooks';
import { useApp } from '../app.js';
import { Heading, messageOf } from './heading.js';

interface Entry {
  seq: number;
  time: string;
  actor: string;
  transport: string;
  action: string;
  target: string;
  new?: unknown;
  outcome: string;
  reason?: string;
  revision: number;
}

interface Row {
  actor: string;
  action: string;
  target: string;
  count: number;
  last: string;
  reason?: string;
}

type Kind = 'changes' | 'refused' | 'unchanged';

/** The audit trail with filters: a scope glob, since when, how many, and which kind of rows. */
export function AuditPage() {
  const { rpc } = useApp();
  const [scope, setScope] = useState('');
  const [since, setSince] = useState('');
  const [limit, setLimit] = useState('100');
  const [kind, setKind] = useState<Kind>('changes');
  const [entries, setEntries] = useState<Entry[] | null>(null);
  const [rows, setRows] = useState<Row[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function search(): Promise<void> {
    const params: Record<string, unknown> = {};
    if (scope.trim() !== '') params.scope = scope.trim();
    if (since.trim() !== '') params.since = since.trim();
    if (limit.trim() !== '') params.limit = Number(limit);
    if (kind !== 'changes') params[kind] = true;
    try {
      const r = await rpc.call<{ entries: Entry[]; refusals?: Row[]; unchanged?: Row[] }>('audit.list', params);
      setEntries(r.entries);
      setRows(kind === 'refused' ? (r.refusals ?? []) : kind === 'unchanged' ? (r.unchanged ?? []) : null);
      setError(null);
    } catch (e) {
      setError(messageOf(e));
    }
  }
  useEffect(() => {
    search();
  }, []);

  return (
    <>
      <Heading>Audit trail</Heading>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          search();
        }}
      >
        <div class="field">
          <label for="audit-scope">Scope, unit or var (glob)</label>
          <input id="audit-scope" type="text" placeholder="mail.*" value={scope} onInput={(e) => setScope(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="audit-since">Since (revision or time)</label>
          <input id="audit-since" type="text" placeholder="2024-01-01T00:00:00Z" value={since} onInput={(e) => setSince(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="audit-limit">At most</label>
          <input id="audit-limit" type="number" min={1} max={1000} value={limit} onInput={(e) => setLimit(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="audit-kind">Show</label>
          <select id="audit-kind" value={kind} onChange={(e) => setKind(e.currentTarget.value as Kind)}>
            <option value="changes">changes</option>
            <option value="refused">refused calls</option>
            <option value="unchanged">calls that changed nothing</option>
          </select>
        </div>
        <button type="submit">Filter</button>
      </form>
      {error !== null && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {rows === null && entries !== null && (
        <ol class="audit">
          {entries.length === 0 && <li>No entries match.</li>}
          {[...entries].reverse().map((e) => (
            <li key={String(e.seq)} class={`outcome-${e.outcome}`}>
              <time dateTime={e.time}>{new Date(e.time).toLocaleString()}</time> <strong>{e.actor}</strong> {e.action} <code>{e.target}</code>
              {e.new !== undefined && (
                <>
                  {' '}
                  to <code>{JSON.stringify(e.new)}</code>
                </>
              )}{' '}
              <span class="badge">{e.outcome}</span> revision {e.revision}
              {e.reason !== undefined && <p class="reason">{e.reason}</p>}
            </li>
          ))}
        </ol>
      )}
      {rows !== null && (
        <ol class="audit">
          {rows.length === 0 && <li>No calls match.</li>}
          {rows.map((r) => (
            <li key={`${r.actor} ${r.action} ${r.target}`}>
              <strong>{r.actor}</strong> {r.action} <code>{r.target}</code> ×{r.count}, last <time dateTime={r.last}>{new Date(r.last).toLocaleString()}</time>
              {r.reason !== undefined && <p class="reason">{r.reason}</p>}
            </li>
          ))}
        </ol>
      )}
    </>
  );
}
