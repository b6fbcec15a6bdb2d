import { describe, expect, it } from 'vitest';
import { mapEntries, mapsParam } from './own-map.js';
import { senderMapText, serviceLines, serviceName } from './sender-ip.js';

const OWN = 'hash:$config_directory/scoped-transport';

describe("scoped's map in a maps parameter", () => {
  it("goes first, before the operator's maps, which stay as written", () => {
    expect(mapsParam(null, OWN, 'scoped-transport')).toBe(OWN);
    expect(mapsParam('hash:/etc/postfix/transport', OWN, 'scoped-transport')).toBe(`${OWN}, hash:/etc/postfix/transport`);
    expect(mapsParam(`${OWN}, hash:/etc/postfix/transport`, OWN, 'scoped-transport')).toBe(`${OWN}, hash:/etc/postfix/transport`);
  });

  it("taken away, leaves the operator's value byte for byte", () => {
    const theirs = 'hash:/etc/postfix/transport   regexp:/etc/postfix/re';
    expect(mapsParam(mapsParam(theirs, OWN, 'scoped-transport'), null, 'scoped-transport')).toBe(theirs);
    expect(mapsParam(OWN, null, 'scoped-transport')).toBeNull();
    // Moved by hand behind the operator's map: still found and taken out.
    expect(mapsParam(`hash:/etc/postfix/transport, ${OWN}`, null, 'scoped-transport')).toBe('hash:/etc/postfix/transport');
    // Another map type (default_database_type changed) is still scoped's.
    expect(mapsParam('lmdb:$config_directory/scoped-transport', OWN, 'scoped-transport')).toBe(OWN);
  });

  it('keeps inline tables whole', () => {
    expect(mapEntries('inline:{ a.test=error:x, b.test=error:y }, hash:/t')).toEqual(['inline:{ a.test=error:x, b.test=error:y }', 'hash:/t']);
  });
});

describe('sender IP services', () => {
  it('one service per address and HELO, and a map entry per sender', () => {
    const routes = { 'one.test': { ip: '127.0.0.2', helo: 'h2.one.test' }, 'a@two.test': { ip: '127.0.0.3' }, 'three.test': { ip: '127.0.0.3' } };
    expect(serviceName({ ip: '127.0.0.3' })).toBe('ip-127-0-0-3');
    expect(serviceName({ ip: '2001:db8::1' })).toBe('ip-2001-db8-1');
    const lines = serviceLines(routes);
    expect(lines.filter((l) => /^\S/.test(l))).toHaveLength(2);
    expect(lines).toContain('  -o smtp_bind_address=127.0.0.2');
    expect(lines).toContain('  -o smtp_helo_name=h2.one.test');
    expect(serviceLines({ x: { ip: '2001:db8::1' } })).toContain('  -o smtp_bind_address6=2001:db8::1');
    expect(senderMapText(routes)?.split('\n').slice(1)).toEqual([
      'a@two.test ip-127-0-0-3:',
      `@one.test ${serviceName(routes['one.test'])}:`,
      '@three.test ip-127-0-0-3:',
      '',
    ]);
    expect(senderMapText({})).toBeNull();
  });
});
