import { type PlanContext, describeChange } from '@scoped/sdk';
import { describe, expect, it } from 'vitest';
import { type PostfixObserved, authMapText, configurePostfix, desiredParams } from './configure-postfix.js';

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

  it('without credentials: no SASL; disabled: TLS back to may and everything unset', () => {
    const host = desiredParams({ ...base, postfix_smarthost: { host: 'relay.example.com', username: '', password: '' } }, 'lmdb');
    expect(host.get('smtp_sasl_auth_enable')).toBeNull();
    expect(host.get('smtp_tls_security_level')).toBe('encrypt');
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
    );
    expect(p.get('smtp_tls_security_level')).toBe('dane');
    expect(p.get('smtpd_relay_restrictions')).toMatch(/^permit_mynetworks, /);
    expect(p.get('smtpd_sasl_authenticated_header')).toBe('yes');
    expect(p.get('myhostname')).toBe('mail.example.com');
  });
});

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
