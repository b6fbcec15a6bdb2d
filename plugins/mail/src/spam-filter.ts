import { type Change, defineUnit } from '@scoped/sdk';

/** Where Postfix reaches each filter's milter (Debian's defaults). */
export const MILTERS = {
  rspamd: 'inet:127.0.0.1:11332',
  spamassassin: 'unix:/spamass/spamass.sock',
} as const;

/** The Debian packages each filter needs, and a program that shows the package is installed. */
export const PACKAGES: Record<keyof typeof MILTERS, { packages: string[]; service: string }> = {
  rspamd: { packages: ['rspamd'], service: 'rspamd' },
  spamassassin: { packages: ['spamassassin', 'spamass-milter'], service: 'spamd' },
};

type Filter = keyof typeof MILTERS;

/** The filters that should run for these vars: the spam filter, and rspamd when enabled beside it. */
export function wantedFilters(spamfilter: unknown, rspamd: unknown): Filter[] {
  const out: Filter[] = [];
  if (spamfilter === 'spamassassin' || spamfilter === 'rspamd') out.push(spamfilter);
  if (rspamd === true && !out.includes('rspamd')) out.push('rspamd');
  return out;
}

/** The filters a smtpd_milters value names. */
export function filtersIn(milters: string | undefined): Filter[] {
  const list = (milters ?? '').split(/[\s,]+/);
  return (Object.keys(MILTERS) as Filter[]).filter((f) => list.includes(MILTERS[f]));
}

interface Observed {
  present: boolean;
  params: Map<string, string>;
  installed: Record<Filter, boolean>;
}

export const spamFilterUnit = defineUnit<Observed>({
  name: 'mail/spam-filter',
  description: 'Postfix milter settings for the spam filters, and which filter services run',
  reads: ['spamfilter', 'rspamd_enabled'],

  async validate(vars, { system }) {
    for (const f of wantedFilters(vars.spamfilter, vars.rspamd_enabled)) {
      if (!(await system.services.installed(PACKAGES[f].service))) {
        return `${f} is not installed: install it first (apt-get install ${PACKAGES[f].packages.join(' ')}), then set the filter again`;
      }
      const problem = await system.services.checkConfig(PACKAGES[f].service);
      if (problem) return `${f}'s configuration does not pass its own check, so it was not switched on: ${problem}`;
    }
    return undefined;
  },

  async observe({ system }) {
    const installed = { rspamd: await system.services.installed('rspamd'), spamassassin: await system.services.installed('spamd') };
    return { present: (await system.stat('/etc/postfix/main.cf')) !== null, params: await system.postfix.mainCf(), installed };
  },

  plan(vars, o) {
    if (!o.present) return [];
    const wanted = wantedFilters(vars.spamfilter, vars.rspamd_enabled);
    const milters = wanted.map((f) => MILTERS[f]).join(', ');
    const desired = new Map<string, string | null>([
      ['smtpd_milters', milters || null],
      ['non_smtpd_milters', milters ? '$smtpd_milters' : null],
      ['milter_default_action', milters ? 'accept' : null],
    ]);
    const changes: Change[] = [];
    for (const [param, value] of desired) {
      const current = o.params.get(param) ?? null;
      if (current !== value) changes.push({ kind: 'postconf', param, value, current, var: 'spamfilter' });
    }
    if (!changes.length) return changes;
    for (const f of Object.keys(MILTERS) as Filter[]) {
      if (o.installed[f]) changes.push({ kind: 'service', service: PACKAGES[f].service, action: wanted.includes(f) ? 'start' : 'stop' });
    }
    changes.push({ kind: 'service', service: 'postfix', action: 'reload' });
    return changes;
  },
});
