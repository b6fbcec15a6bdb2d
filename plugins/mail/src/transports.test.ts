import { withManagedBlock } from '@scoped/sdk';
import { describe, expect, it } from 'vitest';
import { transportUnit } from './transport.js';
import { destinationProblem, servicesUsed, transportMapText, transportProblem } from './transports.js';

describe('transport entries', () => {
  it('accepts the forms transport(5) documents', () => {
    for (const d of ['example.com', '.example.com', '*', 'yahoo.com']) expect(destinationProblem(d)).toBeNull();
    for (const t of ['relaylim:', 'oneshot:', 'smtp:[relay.example.com]:587', 'relay:relay.example.com', 'error:Bad domain!', 'discard:'])
      expect(transportProblem(t)).toBeNull();
  });

  it('refuses anything that could add a second entry or is not a transport', () => {
    expect(destinationProblem('a.com b.com')).toMatch(/not a destination/);
    expect(destinationProblem('a.com\nx.com')).toMatch(/not a destination/);
    expect(transportProblem('relaylim:\nx.com smtp:')).toMatch(/line break/);
    expect(transportProblem('bogus:')).toMatch(/unknown transport/);
    expect(transportProblem('smtp:[a]:70000')).toMatch(/not a next hop/);
    expect(transportProblem('error:')).toMatch(/needs a text/);
  });

  it('writes a sorted map and tells which services it needs', () => {
    const entries = { 'yahoo.com': 'relaylim:', '.ru': 'oneshot:' };
    expect(transportMapText(entries).split('\n').slice(1)).toEqual(['.ru oneshot:', 'yahoo.com relaylim:', '']);
    expect(servicesUsed(entries)).toEqual(['relaylim', 'oneshot']);
    expect(transportMapText({})).toBe('');
  });
});

describe('the mail/transport unit', () => {
  const observed = (main: Record<string, string>, master: string) => ({
    present: true,
    main: new Map(Object.entries(main)),
    master,
    filter: null,
    map: {
      path: '/etc/postfix/scoped-transport',
      text: null,
      mtime: null,
      dbPath: '/etc/postfix/scoped-transport.db',
      dbMtime: null,
      ref: 'hash:$config_directory/scoped-transport',
    },
  });
  const ctx = {} as never;

  it("changes nothing of the operator's own transports while scoped has no entry", async () => {
    const theirs = observed(
      { transport_maps: 'hash:/etc/postfix/transport', relaylim_destination_concurrency_limit: '1' },
      'smtp inet n - y - - smtpd\nrelaylim unix - - n - - smtp\n',
    );
    expect(await transportUnit.plan({ mail_transports: {} }, theirs, ctx)).toEqual([]);
  });

  it('takes the relaylim limit away with its own relaylim service', async () => {
    const ours = observed(
      { transport_maps: 'hash:$config_directory/scoped-transport', relaylim_destination_concurrency_limit: '1' },
      withManagedBlock(
        'smtp inet n - y - - smtpd\n',
        ['relaylim  unix  -       -       n       -       -       smtp', '  -o syslog_name=postfix/relaylim'],
        'transport',
      ),
    );
    const plan = await transportUnit.plan({ mail_transports: {} }, ours, ctx);
    expect(plan).toContainEqual(expect.objectContaining({ kind: 'postconf', param: 'relaylim_destination_concurrency_limit', value: null }));
    expect(plan).toContainEqual(expect.objectContaining({ kind: 'postconf', param: 'transport_maps', value: null }));
    expect(plan).toContainEqual(expect.objectContaining({ kind: 'master.block', name: 'transport', lines: null }));
  });
});
