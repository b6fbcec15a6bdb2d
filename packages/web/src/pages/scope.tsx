import { useEffect, useState } from 'preact/hooks';
import { useApp } from '../app.js';
import { type PlanChange, PlanView } from '../diff.js';
import { Field, type FormContext, placeErrors } from '../form.js';
import { RpcError } from '../rpc.js';
import { type Json, type Schema, emptyValue, fits, isReadOnly } from '../schema.js';
import { Heading, messageOf } from './heading.js';

interface Info {
  name: string;
  summary: string;
  help: string;
  usage: string;
  examples: string[];
  secretFields: string[];
  valueSchema: Schema;
}

interface Current {
  value: Json;
  revision: number;
  drift: { unit: string; target: string; expected: string | null; actual: string | null }[];
}

interface Job {
  id: string;
  state: 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
  done: number;
  total: number;
  step: string | null;
  result?: { revision?: number };
  error?: { code: number; message: string };
}

const ENDED = new Set(['done', 'failed', 'cancelled']);
const REDACTED = '[redacted]';

/** The current value as the form's start: redacted secrets emptied, a value of another shape (a keyed scope's map) not used. */
function startValue(info: Info, value: Json): Json {
  const schema = info.valueSchema;
  if (!fits(schema, value, schema)) return emptyValue(schema, schema);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(value)) if (!(info.secretFields.includes(k) && v === REDACTED)) out[k] = v;
  return out;
}

/** One scope: its help, current value and revision, and a form to preview and apply a new value. */
export function ScopePage({ name }: { name: string }) {
  const { rpc, session, events } = useApp();
  const [info, setInfo] = useState<Info | null>(null);
  const [current, setCurrent] = useState<Current | null>(null);
  const [readError, setReadError] = useState<string | null>(null);
  const [draft, setDraft] = useState<Json | undefined>(undefined);
  const [errors, setErrors] = useState<Map<string, string[]>>(new Map());
  const [formError, setFormError] = useState<string | null>(null);
  const [plan, setPlan] = useState<{ plan: PlanChange[]; value: Json } | null>(null);
  const [job, setJob] = useState<Job | null>(null);
  const [busy, setBusy] = useState(false);
  const [paths] = useState(() => new Set<string>());
  const canChange = session.role !== 'reader';

  async function load(resetDraft: boolean): Promise<void> {
    try {
      const i = info ?? (await rpc.call<Info>('scope.info', { name }));
      setInfo(i);
      try {
        const c = await rpc.call<Current>('scope.get', { name });
        setCurrent(c);
        setReadError(null);
        if (resetDraft) setDraft(startValue(i, c.value));
      } catch (e) {
        setReadError(messageOf(e));
        if (resetDraft) setDraft(emptyValue(i.valueSchema, i.valueSchema));
      }
    } catch (e) {
      setReadError(messageOf(e));
    }
  }
  useEffect(() => {
    load(true);
  }, []);

  // Progress of the running job, from the live feed; its end is read once with job.get.
  const mine = job === null ? [] : events.filter((e) => e.data.job === job.id);
  const last = [...mine].reverse().find((e) => e.topic === 'job.progress');
  const end = mine.find((e) => /^job\.(done|failed|cancelled)$/.test(e.topic));
  useEffect(() => {
    if (job === null || end === undefined || ENDED.has(job.state)) return;
    rpc.call<Job>('job.get', { id: job.id }).then((j) => {
      setJob(j);
      setBusy(false);
      if (j.state === 'done') load(false);
    });
  }, [end?.revision]);

  // Someone else changed this scope: say so (an Apply would get the conflict error).
  const changedElsewhere = events.some(
    (e) =>
      e.topic === 'scope.changed' && e.data.scope === name && typeof e.data.revision === 'number' && current !== null && e.data.revision > current.revision,
  );

  function fail(e: unknown): void {
    if (e instanceof RpcError && e.code === -32602) {
      const issues = (e.data as { issues?: { path: (string | number)[]; message: string }[] } | undefined)?.issues;
      if (issues !== undefined && issues.length > 0) {
        setErrors(placeErrors(issues, paths));
        setFormError(null);
        return;
      }
    }
    setErrors(new Map());
    setFormError(e instanceof RpcError && e.code === -32004 ? `${e.message}. Reload the value, check it, and try again.` : messageOf(e));
  }

  async function preview(): Promise<void> {
    setBusy(true);
    setPlan(null);
    setJob(null);
    try {
      const r = await rpc.call<{ plan: PlanChange[]; value: Json }>('scope.set', { name, value: draft ?? null, dryRun: true, ...ifRevision() });
      setErrors(new Map());
      setFormError(null);
      setPlan(r);
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  }

  async function apply(): Promise<void> {
    setBusy(true);
    setJob(null);
    try {
      const r = await rpc.call<{ status: string; job?: string; revision?: number }>('scope.set', { name, value: draft ?? null, async: true, ...ifRevision() });
      setErrors(new Map());
      setFormError(null);
      if (r.job !== undefined) setJob({ id: r.job, state: 'queued', done: 0, total: 0, step: null });
      else {
        setBusy(false);
        setJob({ id: '', state: 'done', done: 0, total: 0, step: null, result: r });
        load(false);
      }
    } catch (e) {
      fail(e);
      setBusy(false);
    }
  }

  async function cancel(): Promise<void> {
    if (job === null) return;
    try {
      await rpc.call('job.cancel', { id: job.id });
    } catch (e) {
      setFormError(messageOf(e));
    }
  }

  const ifRevision = () => (current === null ? {} : { ifRevision: current.revision });

  if (info === null) {
    return (
      <>
        <Heading>{name}</Heading>
        {readError !== null ? (
          <p class="error" role="alert">
            {readError}
          </p>
        ) : (
          <p>Loading…</p>
        )}
      </>
    );
  }

  const ctx: FormContext = { root: info.valueSchema, secrets: new Set(info.secretFields), errors, paths, disabled: busy };
  paths.clear();
  const running = job !== null && !ENDED.has(job.state);
  const done = last === undefined ? 0 : Number(last.data.done);
  const total = last === undefined ? 0 : Number(last.data.total);
  return (
    <>
      <p class="crumbs">
        <a href="#/">All scopes</a>
      </p>
      <Heading>{info.name}</Heading>
      <p class="summary">{info.summary}</p>
      <section aria-labelledby="current-h">
        <h2 id="current-h">Current value</h2>
        {readError !== null && <p class="error">{readError}</p>}
        {current !== null && (
          <>
            <pre class="value">{JSON.stringify(current.value, null, 2)}</pre>
            <p>
              Revision <strong class="revision">{current.revision}</strong>
              {current.drift.length > 0 && <span class="badge drift">drift: {current.drift.length}</span>}
            </p>
            {current.drift.length > 0 && (
              <ul class="drift-list">
                {current.drift.map((d) => (
                  <li key={`${d.unit} ${d.target}`}>
                    {d.target}: expected {d.expected ?? '(none)'}, found {d.actual ?? '(none)'}
                  </li>
                ))}
              </ul>
            )}
          </>
        )}
        {changedElsewhere && (
          <p class="notice" role="status">
            This scope changed since the page read it.{' '}
            <button type="button" class="secondary" onClick={() => load(true)}>
              Reload value
            </button>
          </p>
        )}
      </section>

      {!isReadOnly(info.valueSchema) && (
        <section aria-labelledby="change-h">
          <h2 id="change-h">{canChange ? 'Change it' : 'Value'}</h2>
          {!canChange && <p>Your session reads only: it cannot change scopes.</p>}
          {canChange && (
            <form
              noValidate
              onSubmit={(e) => {
                e.preventDefault();
                preview();
              }}
            >
              <Field ctx={ctx} schema={info.valueSchema} value={draft} path={[]} label={info.name} onChange={(v) => setDraft(v)} />
              {formError !== null && (
                <p class="error form-error" role="alert">
                  {formError}
                </p>
              )}
              {errors.size > 0 && (
                <p class="error" role="alert">
                  scoped refused the value: see the message at the field.
                </p>
              )}
              <div class="actions">
                <button type="submit" disabled={busy}>
                  Preview
                </button>
                <button type="button" disabled={busy} onClick={apply}>
                  Apply
                </button>
                {running && (
                  <button type="button" class="danger" onClick={cancel}>
                    Cancel
                  </button>
                )}
              </div>
            </form>
          )}
        </section>
      )}

      {job !== null && (
        <section aria-labelledby="job-h" class="job">
          <h2 id="job-h">Apply</h2>
          <label for="progress">{running ? `Applying: ${done} of ${total || '?'} changes` : 'Progress'}</label>
          <progress id="progress" max={total || 1} value={running ? done : job.state === 'done' ? total || 1 : done} />
          {running && last !== undefined && <p class="step">{String(last.data.step ?? '')}</p>}
          <p class="outcome" role="status">
            {job.state === 'done' && `Applied. The scope is now at revision ${job.result?.revision ?? current?.revision ?? '?'}.`}
            {job.state === 'cancelled' && `Cancelled: everything it changed was rolled back. ${job.error?.message ?? ''}`}
            {job.state === 'failed' && `Failed and rolled back: ${job.error?.message ?? 'no reason given'}`}
          </p>
        </section>
      )}

      {plan !== null && (
        <section aria-labelledby="plan-h">
          <h2 id="plan-h">Preview: what Apply would change</h2>
          <p>The value as scoped read it (secrets redacted):</p>
          <pre class="value">{JSON.stringify(plan.value, null, 2)}</pre>
          <PlanView plan={plan.plan} />
        </section>
      )}

      <section aria-labelledby="help-h">
        <h2 id="help-h">Help</h2>
        <p>{info.help}</p>
        <h3>Usage</h3>
        <pre>
          cpcmd scope:set {info.name} {info.usage}
        </pre>
        {info.examples.length > 0 && (
          <>
            <h3>Examples</h3>
            <ul class="examples">
              {info.examples.map((x) => (
                <li key={x}>
                  <code>{x}</code>
                </li>
              ))}
            </ul>
          </>
        )}
      </section>
    </>
  );
}
