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
      { scope: 'mail.transport', args: ['yahoo.com', 'relaylim:'] },
      { scope: 'mail.transport', args: ['.ru', 'oneshot:'] },
      { scope: 'mail.transport', args: ['example.com', 'error:Bad domain!'] },
      { scope: 'mail.transport', args: ['partner.example', 'smtp:[127.0.0.1]:2525'] },
      { scope: 'mail.sender-ip', args: ['example.com', '127.0.0.2', 'mail.example.com'] },
      { scope: 'mail.sender-ip', args: ['news@example.com', '127.0.0.3'] },
    ],
  },
);
