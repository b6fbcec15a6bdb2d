import { postfixRoot, scopePluginSuite } from '@scoped/testing';
import { describe, expect, it } from 'vitest';
import plugin from './index.js';

// The same suite every scoped plugin runs, against a real engine and real Postfix files.
scopePluginSuite(
  { describe, it, expect: expect as never },
  { plugin, makeRoot: () => postfixRoot(), samples: [{ scope: 'cp.bootstrapper', args: ['postfix_relay_mynetworks', false] }] },
);
