import { postfixRoot, scopePluginSuite } from '@scoped/testing';
import { describe, expect, it } from 'vitest';
import plugin from './index.js';

// The same suite every scoped plugin runs, against a real engine and real Postfix files.
scopePluginSuite(
  { describe, it, expect: expect as never },
  {
    plugin,
    makeRoot: () => postfixRoot(),
    samples: [
      { scope: 'mail.smart-host', args: ['[127.0.0.1]:2525', 'alice', 'Suite-Secret-7q'], secrets: ['Suite-Secret-7q'] },
      { scope: 'mail.smart-host', args: ['relay.example.com'] },
    ],
  },
);
