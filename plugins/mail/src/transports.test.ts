import { describe, expect, it } from 'vitest';
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
