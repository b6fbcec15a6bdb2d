import { useApp } from '../app.js';
import { Heading } from './heading.js';

/** One line about an event: who changed what, or how far a job is. */
function describe(topic: string, d: Record<string, unknown>): string {
  const s = (k: string) => (d[k] === undefined ? '' : String(d[k]));
  switch (topic) {
    case 'scope.changed':
      return `${s('actor')} set ${s('scope')} to ${JSON.stringify(d.value)} (revision ${s('revision')})`;
    case 'unit.converged':
      return `${Array.isArray(d.units) ? d.units.join(', ') : ''} converged after ${s('action')} ${s('target')}`;
    case 'drift.detected':
      return `drift on ${s('scope') || 'the system'}: ${Array.isArray(d.drift) ? d.drift.length : 0} difference(s)`;
    case 'job.progress':
      return `${s('job')}: ${s('done')} of ${s('total')}: ${s('step')}`;
    default:
      return `${s('job')} ${s('action')} ${s('target')} ${s('error')}`.trim();
  }
}

/** The live feed: every event since the page loaded, newest first, as it arrives. */
export function EventsPage() {
  const { events } = useApp();
  const shown = events.filter((e) => e.topic !== 'job.progress').reverse();
  return (
    <>
      <Heading>Events</Heading>
      <p>Changes made anywhere (this page, cpcmd, another session) appear here as they happen. Job progress is left out.</p>
      {shown.length === 0 && <p>No events since this page loaded.</p>}
      <ol class="events" aria-live="polite">
        {shown.map((e) => (
          <li key={String(e.revision)}>
            <time dateTime={e.time}>{new Date(e.time).toLocaleTimeString()}</time> <strong>{e.topic}</strong> <span>{describe(e.topic, e.data)}</span>
          </li>
        ))}
      </ol>
    </>
  );
}
