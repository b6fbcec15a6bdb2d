import { describe, expect, it } from 'vitest';
import { customParameterProblem } from './dangerous-params.js';

describe('customParameterProblem', () => {
  it.each([
    ['daemon_directory', '/tmp/x', /directories/],
    ['queue_directory', '/tmp/q', /directories/],
    ['command_directory', '/tmp/c', /directories/],
    ['mailbox_command', '/usr/bin/procmail', /programs and commands/],
    ['sendmail_path', '/tmp/sendmail', /programs and commands/],
    ['command_expansion_filter', 'a-z;|&', /programs and commands/],
    ['alias_maps', 'hash:/etc/postfix/aliases', /programs and commands/],
    ['mail_owner', 'root', /owners/],
    ['default_privs', 'root', /owners/],
    ['smtpd_authorized_xclient_hosts', '0.0.0.0/0', /owners/],
    ['import_environment', 'LD_PRELOAD=/tmp/x.so', /environment/],
    ['export_environment', 'PATH=/tmp', /environment/],
    ['content_filter', 'smtp:[127.0.0.1]:10024', /filters and milters/],
    ['smtpd_milters', 'inet:127.0.0.1:11332', /filters and milters/],
    ['milter_default_action', 'accept', /filters and milters/],
    ['always_bcc', 'thief@example.org', /filters and milters/],
    ['default_transport', 'maildrop', /transports/],
    ['transport_maps', 'hash:/etc/postfix/transport', /transports/],
    ['bounce_service_name', 'pipe', /transports/],
    ['smtp_sasl_password_maps', 'hash:/etc/postfix/other', /owned by the var postfix_smarthost/],
    ['smtp_fallback_relay', '[evil.example.org]', /relay and credentials/],
    ['smtp_sasl_tls_security_options', '', /relay and credentials/],
    ['smtp_tls_policy_maps', 'inline:{[relay.example.com]:587=none}', /relay and credentials/],
    ['maillog_file', '/etc/postfix/main.cf', /log files/],
    ['relayhost', '[evil.example.org]', /owned by the var postfix_smarthost/],
    ['smtpd_relay_restrictions', 'permit', /owned by the var postfix_relay_mynetworks/],
    ['header_checks', 'regexp:/tmp/checks', /path outside \/etc\/postfix/],
    ['header_checks', 'pcre:${config_directory}/../../tmp/x', /path outside/],
    ['header_checks', 'regexp:../../tmp/checks', /path outside/],
    ['smtpd_tls_cert_file', '$data_directory/cert.pem', /path outside/],
    ['mynetworks', '127.0.0.0/8 /home/attacker/nets', /path outside/],
    ['virtual_alias_maps', 'tcp:127.0.0.1:9999', /tcp: lookup table/],
    ['virtual_alias_maps', 'proxy:mysql:/etc/postfix/sql.cf', /mysql: lookup table/],
    ['smtpd_recipient_restrictions', 'check_recipient_access inline:{ a@example.com=FILTER maildrop: }', /FILTER action/],
  ])('refuses %s = %s', (name, value, why) => {
    expect(customParameterProblem(name, value)).toMatch(why);
  });

  it.each([
    ['smtpd_banner', '$myhostname ESMTP'],
    ['message_size_limit', '52428800'],
    ['mynetworks', '127.0.0.0/8 [::1]/128'],
    ['header_checks', 'regexp:/etc/postfix/header_checks'],
    ['virtual_alias_maps', 'proxy:hash:$config_directory/virtual'],
    ['smtpd_recipient_restrictions', 'permit_mynetworks, reject_unauth_destination, check_policy_service unix:private/policy'],
    ['smtpd_tls_cert_file', '/etc/postfix/cert.pem'],
  ])('accepts %s = %s', (name, value) => {
    expect(customParameterProblem(name, value)).toBeNull();
  });
});
