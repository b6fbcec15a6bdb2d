/**
 * A small scoped plugin, written the way any third party writes one: one var, one unit that
 * converges it onto one main.cf parameter, and one scope that is its typed face. It uses only
 * @scoped/sdk's public exports and runs the compliance suite every plugin runs.
 */
import { type Change, ScopeInputError, argText, definePlugin, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';

const MAIN_CF = '/etc/postfix/main.cf';
const PARAM = 'smtpd_banner';

/** Why a banner text is refused, or null: one printable line, without `$` (Postfix would expand it). */
export function bannerProblem(text: string): string | null {
  if (!/^[\x20-\x7e]{1,100}$/.test(text)) return 'the banner is one line of 1 to 100 printable ASCII characters';
  if (text.includes('$')) return 'the banner may not contain $ (Postfix would read it as a parameter)';
  return null;
}

const Banner = z.string().superRefine((s, ctx) => {
  const p = bannerProblem(s);
  if (p) ctx.addIssue({ code: 'custom', message: p });
});

export const bannerVar = defineVar({
  name: 'example_banner',
  description: 'The text the SMTP greeting shows after "$myhostname ESMTP", false for Postfix\'s own greeting, or null to leave main.cf as it is',
  schema: z.union([Banner, z.literal(false), z.null()]),
  // Until someone sets it, main.cf keeps whatever banner it has: a plugin changes only what it is asked to.
  default: null as string | false | null,
});

/** The smtpd_banner value for a banner text (null: take it out of main.cf, so Postfix's default applies). */
export const bannerParam = (text: string | false): string | null => (text === false ? null : `$myhostname ESMTP ${text}`);

export const bannerUnit = defineUnit<{ present: boolean; current: string | null }>({
  name: 'example/banner',
  description: 'smtpd_banner in main.cf',
  reads: ['example_banner'],
  async observe({ system }) {
    return { present: (await system.stat(MAIN_CF)) !== null, current: (await system.postfix.mainCf()).get(PARAM) ?? null };
  },
  plan(vars, o) {
    const wanted = vars.example_banner as string | false | null;
    if (!o.present || wanted === null) return [];
    const value = bannerParam(wanted);
    if (value === o.current) return [];
    const changes: Change[] = [{ kind: 'postconf', param: PARAM, value, current: o.current, var: 'example_banner' }];
    changes.push({ kind: 'service', service: 'postfix', action: 'reload' });
    return changes;
  },
});

export const bannerScope = defineScope<{ text: string | false }>({
  name: 'example.banner',
  summary: 'The text of the SMTP greeting, after "HOSTNAME ESMTP"',
  help:
    'TEXT sets smtpd_banner to "$myhostname ESMTP TEXT"; false takes it out of main.cf, so Postfix greets as it does by ' +
    "default. Until it is set, main.cf's banner is left as it is.",
  usage: 'TEXT | false',
  examples: ["cpcmd scope:set example.banner 'Welcome, mail only'", 'cpcmd scope:set example.banner false', 'cpcmd scope:get example.banner'],
  schema: z.object({ text: z.union([Banner, z.literal(false)]) }),
  vars: ['example_banner'],
  parseArgs(args, ctx) {
    if (args.length !== 1) throw new ScopeInputError("example.banner takes one TEXT (quote it: 'Welcome, mail only'), or false");
    if (args[0] === false) return { text: false };
    const text = argText(args, 0, ctx);
    if (text === undefined) throw new ScopeInputError("the banner is text such as 'Welcome, mail only', or false");
    return { text };
  },
  toVars(value) {
    return { example_banner: value.text };
  },
  async get({ system }) {
    const banner = (await system.postfix.mainCf()).get(PARAM);
    const m = banner === undefined ? null : /^\$myhostname ESMTP (.+)$/.exec(banner);
    return m ? m[1]! : false;
  },
});

export default definePlugin({
  name: 'scoped-plugin-example',
  version: '0.1.0',
  apiVersion: 1,
  vars: [bannerVar],
  units: [bannerUnit],
  scopes: [bannerScope],
});
