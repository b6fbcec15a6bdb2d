/**
 * A dry-run plan as a readable diff, file by file. The daemon's summaries are already redacted
 * (`[redacted]`); this only arranges them: `main.cf relayhost: "a" -> "b"` becomes a removed and
 * an added line under main.cf, anything else a line of its own.
 */
export interface PlanChange {
  unit: string;
  kind: string;
  target: string;
  summary: string;
}

interface Line {
  sign: '-' | '+' | '~';
  text: string;
}

/** The file a change is about: main.cf for `main.cf:param`, the path for a file, else the target. */
const fileOf = (c: PlanChange) => (/^[\w.-]+\.cf:/.test(c.target) ? c.target.slice(0, c.target.indexOf(':')) : c.target);

function linesOf(c: PlanChange): Line[] {
  const m = /^(?:[\w.-]+\.cf )?(.*?): (.*) -> (.*)$/s.exec(c.summary);
  if (m === null) return [{ sign: '~', text: c.summary }];
  const [, what, from, to] = m;
  const out: Line[] = [];
  if (from !== '(unset)') out.push({ sign: '-', text: `${what} = ${from}` });
  if (to !== '(unset)') out.push({ sign: '+', text: `${what} = ${to}` });
  return out.length > 0 ? out : [{ sign: '~', text: c.summary }];
}

const SIGN_NAME = { '-': 'removed', '+': 'added', '~': 'changed' } as const;

export function PlanView({ plan }: { plan: PlanChange[] }) {
  if (plan.length === 0) return <p>Nothing would change: the system already matches this value.</p>;
  const files = new Map<string, PlanChange[]>();
  for (const c of plan) files.set(fileOf(c), [...(files.get(fileOf(c)) ?? []), c]);
  return (
    <div class="plan">
      {[...files].map(([file, changes]) => (
        <section key={file} class="plan-file">
          <h3>
            {file} <span class="unit">({[...new Set(changes.map((c) => c.unit))].join(', ')})</span>
          </h3>
          <ul class="diff">
            {changes.flatMap(linesOf).map((l, i) => (
              <li key={String(i)} class={`diff-${SIGN_NAME[l.sign]}`}>
                <span class="sign" aria-hidden="true">
                  {l.sign}
                </span>
                <span class="sr-only">{SIGN_NAME[l.sign]}: </span>
                <code>{l.text}</code>
              </li>
            ))}
          </ul>
        </section>
      ))}
    </div>
  );
}
