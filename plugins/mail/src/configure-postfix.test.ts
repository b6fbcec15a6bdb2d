import { describe, expect, it } from 'vitest';
import { desiredParams } from './configure-postfix.js';

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
    const p = desiredParams({ ...base, postfix_smtp_tls_security_level: 'dane', postfix_relay_mynetworks: true, postfix_add_sasl_auth_header: true, system_hostname: 'mail.example.com' }, 'hash');
    expect(p.get('smtp_tls_security_level')).toBe('dane');
    expect(p.get('smtpd_relay_restrictions')).toMatch(/^permit_mynetworks, /);
    expect(p.get('smtpd_sasl_authenticated_header')).toBe('yes');
    expect(p.get('myhostname')).toBe('mail.example.com');
  });
});
