import { defineVar, z } from '@scoped/sdk';
import { customParameterProblem } from './dangerous-params.js';
import { passwordProblem, relayProblem, userProblem } from './relay.js';

const check = (problem: (s: string) => string | null) =>
  z.string().superRefine((s, ctx) => {
    const p = problem(s);
    if (p) ctx.addIssue({ code: 'custom', message: p });
  });

/** An enabled smart host: the host, and the credentials ('' for none). */
export const SmartHost = z
  .object({
    host: check(relayProblem),
    username: z.string().default(''),
    password: z.string().default(''),
  })
  .strict()
  .superRefine((v, ctx) => {
    if ((v.username === '') !== (v.password === '')) ctx.addIssue({ code: 'custom', message: 'give both USER and PASS, or neither' });
    const u = v.username && userProblem(v.username);
    if (u) ctx.addIssue({ code: 'custom', path: ['username'], message: u });
    const p = v.password && passwordProblem(v.password);
    if (p) ctx.addIssue({ code: 'custom', path: ['password'], message: p });
  });
export type SmartHost = z.output<typeof SmartHost>;

export const TLS_LEVELS = ['none', 'may', 'encrypt', 'dane', 'dane-only', 'fingerprint', 'verify', 'secure'] as const;

export const postfixSmarthost = defineVar({
  name: 'postfix_smarthost',
  description: 'The relay all outbound mail goes through, with optional SASL credentials; false for direct delivery',
  schema: z.union([z.literal(false), SmartHost]),
  default: false as false | SmartHost,
  secret: ['password'],
});

export const postfixTlsLevel = defineVar({
  name: 'postfix_smtp_tls_security_level',
  description: 'smtp_tls_security_level for outbound mail; empty picks encrypt with a smart host and may without',
  schema: z.enum(['', ...TLS_LEVELS]),
  default: '' as '' | (typeof TLS_LEVELS)[number],
});

export const postfixSaslHeader = defineVar({
  name: 'postfix_add_sasl_auth_header',
  description: 'Record the SASL login name in a Received header (smtpd_sasl_authenticated_header)',
  schema: z.boolean(),
  default: false,
});

export const postfixRelayMynetworks = defineVar({
  name: 'postfix_relay_mynetworks',
  description: 'Let clients in mynetworks relay without logging in (permit_mynetworks); off keeps an audit trail of who sent what',
  schema: z.boolean(),
  default: false,
});

const PARAM = /^[a-z][a-z0-9_]*$/;

/**
 * Raw main.cf parameters: an admin-only power (an operator could otherwise become root through
 * them), and even for the admin the dangerous classes in dangerous-params.ts are refused.
 */
export const postfixCustomConfig = defineVar({
  name: 'postfix_custom_config',
  description:
    'Extra main.cf parameters (admin only); programs, directories, owners, environment, filters and copies of mail, transports, relay credentials and TLS, open relays and files outside /etc/postfix are refused (SECURITY.md lists them)',
  adminOnly: true,
  schema: z
    .record(
      z.string().regex(PARAM, 'a main.cf parameter name is lowercase letters, digits and underscores'),
      z.union([z.string(), z.number(), z.boolean()]).transform((v, ctx) => {
        const s = typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v);
        if (/[\r\n\0]/.test(s)) {
          ctx.addIssue({ code: 'custom', message: 'a main.cf value must be one line, without NUL' });
          return z.NEVER;
        }
        return s.trim();
      }),
    )
    .superRefine((params, ctx) => {
      for (const [name, value] of Object.entries(params)) {
        const problem = customParameterProblem(name, value);
        if (problem) ctx.addIssue({ code: 'custom', path: [name], message: problem });
      }
    }),
  default: {} as Record<string, string>,
});

export const spamfilter = defineVar({
  name: 'spamfilter',
  description: 'The spam filter inbound mail passes through: spamassassin, rspamd, or false for none',
  schema: z.union([z.enum(['spamassassin', 'rspamd']), z.literal(false)]),
  default: false as 'spamassassin' | 'rspamd' | false,
});

export const rspamdEnabled = defineVar({
  name: 'rspamd_enabled',
  description: 'Run rspamd as a milter (policy, DKIM); with spamfilter=spamassassin it learns passively (piggyback)',
  schema: z.boolean(),
  default: false,
});

/**
 * A milter sees every message and may add recipients and rewrite bodies: pointing Postfix at one
 * is a copy of all mail, which raw parameters refuse even to the admin, so only the admin names it.
 */
export const rspamdMilter = defineVar({
  name: 'rspamd_milter',
  description:
    "Where Postfix reaches rspamd's milter (inet:HOST:PORT or unix:PATH; admin only: a milter sees and may change every message); empty for the rspamd scoped runs, on its own endpoint (127.0.0.1:11332 on Debian)",
  adminOnly: true,
  schema: z
    .string()
    .regex(/^(?:|inet:[A-Za-z0-9.\-[\]:]+:\d{1,5}|unix:\/[A-Za-z0-9._\-/]+)$/, 'give inet:HOST:PORT, unix:/PATH, or empty for the rspamd scoped runs'),
  default: '',
});
