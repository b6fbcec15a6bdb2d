import { describe, expect, it } from 'vitest';
import { passwordProblem, relayProblem, userProblem } from './relay.js';
import { relayAddress } from './smtp-verify.js';

describe('relayProblem', () => {
  it.each([
    'relay.example.com',
    'relay.example.com:587',
    '[relay.example.com]',
    '[relay.example.com]:587',
    '[192.0.2.1]',
    '[192.0.2.1]:2525',
    '[ipv6:2001:db8::1]',
    '[ipv6:2001:db8::1]:587',
    'localhost',
  ])('accepts %s', (host) => expect(relayProblem(host)).toBeNull());

  it.each([
    ['', /empty/],
    ['relay.example.com\nmynetworks = 0.0.0.0/0', /control character/],
    ['relay example.com', /whitespace/],
    ['relay=example.com', /"="/],
    ['a.example.com,b.example.com', /","/],
    ['[relay]:0', /out of range/],
    ['[relay]:70000', /out of range/],
    ['[relay]:58x', /not a host/],
    ['[relay', /not a host/],
    ['[ipv6:zz::1]', /not an IPv6/],
    ['-relay.example.com', /not a hostname/],
    ['[256.1.1.1]', /not a hostname or IPv4/],
  ])('refuses %j', (host, why) => expect(relayProblem(host)).toMatch(why));
});

describe('credentials', () => {
  it('refuses users with a colon, whitespace or control characters', () => {
    expect(userProblem('alice')).toBeNull();
    expect(userProblem('al:ice')).toMatch(/":"/);
    expect(userProblem('al ice')).toMatch(/whitespace/);
    expect(userProblem('alice\n')).toMatch(/control/);
  });

  it('takes usernames up to 256 characters and passwords up to 1,024, and says so beyond', () => {
    expect(userProblem('u'.repeat(256))).toBeNull();
    expect(userProblem('u'.repeat(60_000))).toMatch(/^the username is 60000 characters long, and may be at most 256 characters/);
    expect(userProblem('u'.repeat(60_000))).not.toContain('uuuu');
    expect(passwordProblem('p'.repeat(1024))).toBeNull();
    const why = passwordProblem(`s3cret${'p'.repeat(1024)}`);
    expect(why).toMatch(/at most 1024 characters/);
    expect(why).not.toContain('s3cret');
    // Nor its length: that tells something of the password.
    expect(why).not.toMatch(/1030/);
  });

  it('refuses passwords with a line break or NUL, and never quotes the password', () => {
    expect(passwordProblem('s3cret: with spaces')).toBeNull();
    for (const p of ['s3cret\nrelay x:y', 's3cret\0', 's3cret\r']) {
      const why = passwordProblem(p);
      expect(why).toMatch(/line break or a NUL/);
      expect(why).not.toContain('s3cret');
    }
  });
});

describe('relayAddress', () => {
  it('strips brackets and defaults the port to 25', () => {
    expect(relayAddress('[relay.example.com]:587')).toEqual({ host: 'relay.example.com', port: 587 });
    expect(relayAddress('relay.example.com')).toEqual({ host: 'relay.example.com', port: 25 });
    expect(relayAddress('[ipv6:2001:db8::1]:2525')).toEqual({ host: '2001:db8::1', port: 2525 });
  });
});
