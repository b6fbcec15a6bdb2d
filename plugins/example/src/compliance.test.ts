import { postfixRoot, scopePluginSuite } from '@scoped/testing';
import { describe, expect, it } from 'vitest';
import plugin, { bannerProblem } from './index.js';

// The same suite every scoped plugin runs, against a real engine and real Postfix files.
scopePluginSuite(
  { describe, it, expect: expect as never },
  {
    plugin,
    makeRoot: () => postfixRoot(),
    samples: [{ scope: 'example.banner', args: ['Welcome, mail only'] }],
  },
);

describe('banner text', () => {
  it('refuses what could add a second line or a parameter', () => {
    expect(bannerProblem('Welcome')).toBeNull();
    expect(bannerProblem('a\nb')).toMatch(/one line/);
    expect(bannerProblem('$mail_version')).toMatch(/may not contain \$/);
  });
});
