import { type PlanContext, describeChange } from '@scoped/sdk';
import { describe, expect, it } from 'vitest';
import { type PostfixObserved, authMapText, configurePostfix, desiredParams, relayRestrictions, sameParam } from './configure-postfix.js';

const base = {
  postfix_smarthost: false,
  postfix_smtp_tls_security_level: '',
  postfix_add_sasl_auth_header: false,
  postfix_relay_mynetworks: false,
  postfix_custom_config: {},
  system_hostname: '',
};

describe('desiredParams', () => {
  it('with credentials: relayhost, SASL on with the hashed map, TLS required', () => {
    const p = desiredParams({ ...base, postfix_smarthost: { host: '[relay]:587', username: 'alice', password: 's3cret' } }, 'hash');
    expect(Object.fromEntries(p)).toMatchObject({
      relayhost: '[relay]:587',
      smtp_sasl_auth_enable: 'yes',
      smtp_sasl_password_maps: 'hash:$config_directory/smarthost-auth',
      smtp_sasl_security_options: 'noanonymous',
      smtp_tls_security_level: 'encrypt',
    });
    expect([...p.values()].join(' ')).not.toContain('s3cret');
  });

  it('without credentials: no SASL and TLS not forced (may); disabled: TLS back to may and everything unset', () => {
    const host = desiredParams({ ...base, postfix_smarthost: { host: 'relay.example.com', username: '', password: '' } }, 'lmdb');
    expect(host.get('smtp_sasl_auth_enable')).toBeNull();
    expect(host.get('smtp_tls_security_level')).toBe('may');
    const off = desiredParams(base, 'hash');
    expect(off.get('relayhost')).toBeNull();
    expect(off.get('smtp_tls_security_level')).toBe('may');
  });

  it('an explicit TLS level wins, and the relay and header vars map to their parameters', () => {
    const p = desiredParams(
      {
        ...base,
        postfix_smtp_tls_security_level: 'dane',
        postfix_relay_mynetworks: true,
        postfix_add_sasl_auth_header: true,
        system_hostname: 'mail.example.com',
      },
      'hash',
      new Map([['smtpd_relay_restrictions', 'permit_sasl_authenticated, defer_unauth_destination']]),
    );
    expect(p.get('smtp_tls_security_level')).toBe('dane');
    expect(p.get('smtpd_relay_restrictions')).toMatch(/^permit_mynetworks, /);
    expect(p.get('smtpd_sasl_authenticated_header')).toBe('yes');
    expect(p.get('myhostname')).toBe('mail.example.com');
  });
});

describe('relayRestrictions: postfix_relay_mynetworks owns only permit_mynetworks', () => {
  const mine = 'permit_mynetworks, permit_sasl_authenticated, check_client_access hash:/etc/postfix/clients, reject_unauth_destination';

  it("keeps a list that agrees as it is, the admin's own too, and Postfix's unset default", () => {
    expect(relayRestrictions(true, mine)).toBe(mine);
    expect(relayRestrictions(true, null)).toBeNull();
    expect(relayRestrictions(false, 'permit_sasl_authenticated reject_unauth_destination')).toBe('permit_sasl_authenticated reject_unauth_destination');
  });

  it("takes permit_mynetworks out of the admin's list, or puts it first, and leaves every other item", () => {
    expect(relayRestrictions(false, mine)).toBe('permit_sasl_authenticated, check_client_access, hash:/etc/postfix/clients, reject_unauth_destination');
    expect(relayRestrictions(false, null)).toBe('permit_sasl_authenticated, defer_unauth_destination');
    expect(relayRestrictions(true, 'permit_sasl_authenticated reject_unauth_destination')).toBe(
      'permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination',
    );
    expect(relayRestrictions(false, 'permit_mynetworks')).toBe('permit_sasl_authenticated, defer_unauth_destination');
  });

  it('adopting any list reads whether it lets mynetworks relay, so the first converge leaves it alone', async () => {
    for (const [list, relay] of [
      [mine, true],
      ['permit_sasl_authenticated, reject_unauth_destination', false],
    ] as const) {
      const o = { ...emptyObserved(), params: new Map([['smtpd_relay_restrictions', list]]) };
      const adopted = configurePostfix.adopt!(o, base, {} as PlanContext) as Record<string, unknown>;
      expect(adopted.postfix_relay_mynetworks).toBe(relay);
      const changes = await configurePostfix.plan({ ...base, ...adopted }, o, {} as PlanContext);
      expect(changes.filter((c) => c.kind === 'postconf' && c.param === 'smtpd_relay_restrictions')).toEqual([]);
    }
  });
});

function emptyObserved(): PostfixObserved {
  return {
    present: true,
    params: new Map(),
    auth: null,
    authMode: null,
    authMtime: null,
    dbMtime: null,
    customKeys: null,
    mapType: 'hash',
    dbPath: '/etc/postfix/smarthost-auth.db',
  };
}

describe('configurePostfix.plan with credentials the caller just gave (PlanContext.rewrite)', () => {
  const sh = { host: '[relay.example.com]:2525', username: 'alice', password: 'Right-pw' };
  const vars = { ...base, postfix_smarthost: sh };
  /** Postfix as a converge with `stored` as the password leaves it: main.cf, the map and its database in place. */
  const observed = (stored: string): PostfixObserved => ({
    present: true,
    params: new Map([...desiredParams(vars, 'hash')].filter((e): e is [string, string] => e[1] !== null)),
    auth: authMapText({ ...sh, password: stored }),
    authMode: 0o600,
    authMtime: 1_000,
    dbMtime: 2_000,
    customKeys: null,
    mapType: 'hash',
    dbPath: '/etc/postfix/smarthost-auth.db',
  });
  const plain = {} as PlanContext;
  const given = { rewrite: new Set(['postfix_smarthost']) } as unknown as PlanContext;
  const shown = async (o: PostfixObserved, ctx: PlanContext) => (await configurePostfix.plan(vars, o, ctx)).map(describeChange);

  it('plans nothing for the stored credentials without it (reads, drift, converge, the check after an apply)', async () => {
    expect(await shown(observed('Right-pw'), plain)).toEqual([]);
  });

  it('plans the same rewrite, postmap and reload whether the given password equals the stored one or not', async () => {
    const right = await shown(observed('Right-pw'), given);
    expect(right).toEqual([
      'rewrite /etc/postfix/smarthost-auth (mode 0600, content redacted)',
      'postmap /etc/postfix/smarthost-auth (credentials given)',
      'reload postfix if running',
    ]);
    expect(await shown(observed('Wrong-pw'), given)).toEqual(right);
  });
});

describe('what main.cf already means is not rewritten, and is what a first start adopts', () => {
  /** Debian's main.cf as its installer writes it: the relay list spaced, relayhost empty, no TLS level. */
  const debian = (extra: [string, string][] = []): PostfixObserved => ({
    present: true,
    params: new Map([
      ['smtpd_relay_restrictions', 'permit_mynetworks permit_sasl_authenticated defer_unauth_destination'],
      ['relayhost', ''],
      ['myhostname', 'debian.example'],
      ...extra,
    ]),
    auth: null,
    authMode: null,
    authMtime: null,
    dbMtime: null,
    customKeys: null,
    mapType: 'hash',
    dbPath: '/etc/postfix/smarthost-auth.db',
  });

  it('compares as Postfix reads: commas or spaces, unset or its default', () => {
    expect(
      sameParam(
        'smtpd_relay_restrictions',
        'permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination',
        'permit_mynetworks permit_sasl_authenticated defer_unauth_destination',
      ),
    ).toBe(true);
    expect(sameParam('smtpd_relay_restrictions', 'permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination', null)).toBe(true);
    expect(sameParam('smtpd_relay_restrictions', 'permit_sasl_authenticated, defer_unauth_destination', null)).toBe(false);
    expect(sameParam('relayhost', null, '')).toBe(true);
    expect(sameParam('smtp_tls_security_level', 'none', null)).toBe(true);
    expect(sameParam('smtp_tls_security_level', 'may', null)).toBe(false);
    expect(sameParam('myhostname', 'a.example', 'b.example')).toBe(false);
  });

  it("adopts Debian's main.cf as vars under which the plan changes nothing; only a new hostname is written", async () => {
    const o = debian();
    const adopted = await configurePostfix.adopt!(o, base, {} as PlanContext);
    expect(adopted).toEqual({
      postfix_smarthost: false,
      postfix_add_sasl_auth_header: false,
      postfix_relay_mynetworks: true,
      postfix_smtp_tls_security_level: 'none',
    });
    const vars = { ...base, ...adopted };
    expect(await configurePostfix.plan(vars, o, {} as PlanContext)).toEqual([]);
    const named = (await configurePostfix.plan({ ...vars, system_hostname: 'mail.example.com' }, o, {} as PlanContext)).map(describeChange);
    expect(named).toEqual(['main.cf myhostname: "debian.example" -> "mail.example.com"', 'reload postfix if running']);
  });

  it('adopts an empty TLS level when the automatic one is what main.cf has, and a hand-made relay list as whether it lets mynetworks relay', async () => {
    const o = debian([
      ['smtp_tls_security_level', 'may'],
      ['smtpd_relay_restrictions', 'permit_mynetworks, reject_unauth_destination, check_policy_service inet:127.0.0.1:10023'],
    ]);
    const adopted = await configurePostfix.adopt!(o, base, {} as PlanContext);
    expect(adopted).toMatchObject({ postfix_smtp_tls_security_level: '' });
    expect(adopted).toMatchObject({ postfix_relay_mynetworks: true });
  });
});
