import type { PluginDef } from '@scoped/sdk';
import { describe, expect, it } from 'vitest';
import { firstPartyPlugins, orderByDependencies } from './plugins.js';

const plugin = (name: string, dependsOn?: string[]) => ({ def: { name, version: '1.0.0', apiVersion: 1, ...(dependsOn ? { dependsOn } : {}) } as PluginDef });
const names = (r: ReturnType<typeof orderByDependencies>) => ({
  ordered: r.ordered.map((c) => c.def.name),
  refused: r.refused.map((x) => [x.candidate.def.name, x.error]),
});

describe('orderByDependencies', () => {
  it('puts each plugin after the ones it depends on, otherwise keeps the listed order', () => {
    expect(names(orderByDependencies([plugin('a', ['c']), plugin('b'), plugin('c', ['b']), plugin('d')]))).toEqual({
      ordered: ['b', 'c', 'a', 'd'],
      refused: [],
    });
  });

  it('refuses a plugin whose dependency is missing, and those that depend on it, naming what to do', () => {
    expect(names(orderByDependencies([plugin('a', ['gone']), plugin('b', ['a']), plugin('c')]))).toEqual({
      ordered: ['c'],
      refused: [
        ['a', 'it depends on gone, which is not loaded: load gone too (--plugin DIR|PACKAGE), or remove it from dependsOn'],
        ['b', 'it depends on a, which did not load (see its own entry)'],
      ],
    });
  });

  it('refuses every plugin of a cycle with the cycle spelled out, and a plugin that depends on itself', () => {
    const r = names(orderByDependencies([plugin('a', ['b']), plugin('b', ['c']), plugin('c', ['a']), plugin('self', ['self']), plugin('free')]));
    expect(r.ordered).toEqual(['free']);
    expect(r.refused.map(([n, e]) => [n, /\(([^)]*)\)/.exec(e as string)?.[1]])).toEqual([
      ['a', 'a → b → c → a'],
      ['b', 'b → c → a → b'],
      ['c', 'c → a → b → c'],
      ['self', 'self → self'],
    ]);
  });

  it('counts plugins already registered as loaded', () => {
    expect(names(orderByDependencies([plugin('mail', ['net'])], new Set(['net'])))).toEqual({ ordered: ['mail'], refused: [] });
  });
});

describe('firstPartyPlugins', () => {
  it('loads net, mail and cp through the loader, net before mail, which reads its system_hostname', async () => {
    const defs = await firstPartyPlugins();
    expect(defs.map((p) => p.name)).toEqual(['@scoped/plugin-net', '@scoped/plugin-mail', '@scoped/plugin-cp']);
    expect(defs.find((p) => p.name === '@scoped/plugin-mail')?.dependsOn).toEqual(['@scoped/plugin-net']);
  });
});
