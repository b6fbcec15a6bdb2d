/**
 * The compliance suite itself: it hosts a plugin beside the first-party ones the way the
 * daemon does, each after what it names in dependsOn, so a plugin that uses another's var
 * without saying so fails the suite just as it would fail to load in scoped.
 */
import { definePlugin, defineScope, defineUnit, defineVar, z } from '@scoped/sdk';
import { describe, expect, it } from 'vitest';
import { postfixRoot } from './fixtures.js';
import { scopePluginSuite } from './suite.js';

/** A plugin whose unit reads system_hostname, net's var, beside its own. */
function hostnameReader(dependsOn?: string[]) {
  const own = defineVar({ name: 'greeting_text', description: 'a greeting', schema: z.string(), default: '' });
  return definePlugin({
    name: 'scoped-plugin-greeting',
    version: '1.0.0',
    apiVersion: 1,
    ...(dependsOn ? { dependsOn } : {}),
    vars: [own],
    units: [
      defineUnit({ name: 'greeting/file', description: 'nothing', reads: ['greeting_text', 'system_hostname'], observe: async () => null, plan: () => [] }),
    ],
    scopes: [
      defineScope<string>({
        name: 'greeting.text',
        summary: 'a greeting',
        help: 'a greeting',
        usage: 'TEXT',
        examples: [],
        schema: z.string(),
        vars: ['greeting_text'],
        parseArgs: (words) => String(words[0]),
        toVars: (text) => ({ greeting_text: text }),
        get: ({ vars }) => vars.greeting_text,
      }),
    ],
  });
}

/** The suite's first test ("has a valid shape, loads beside the others ..."), run on its own; its error, if any. */
async function firstCheck(plugin: ReturnType<typeof hostnameReader>): Promise<unknown> {
  const tests: (() => Promise<void> | void)[] = [];
  scopePluginSuite(
    { describe: (_name, fn) => fn(), it: (_name, fn) => void tests.push(fn), expect: expect as never },
    { plugin, makeRoot: () => postfixRoot(), samples: [{ scope: 'greeting.text', args: ['hello'] }] },
  );
  try {
    await tests[0]!();
    return undefined;
  } catch (err) {
    return err;
  }
}

describe('scopePluginSuite hosts a plugin the way scoped loads it', () => {
  it('a plugin that reads a first-party var and names its plugin in dependsOn passes', async () => {
    expect(await firstCheck(hostnameReader(['@scoped/plugin-net']))).toBeUndefined();
  });

  it('a plugin that reads a first-party var without dependsOn fails, as scoped would refuse it', async () => {
    const err = await firstCheck(hostnameReader());
    // The failure carries the reason scoped gives, whole.
    expect((err as { actual?: unknown }).actual).toBe(
      "unit greeting/file reads var system_hostname of @scoped/plugin-net, which it does not depend on: add '@scoped/plugin-net' to the plugin's dependsOn",
    );
  });
});
