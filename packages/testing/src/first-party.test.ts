import cpPlugin from '@scoped/plugin-cp';
import mailPlugin from '@scoped/plugin-mail';
import netPlugin from '@scoped/plugin-net';
import { describe, expect, it } from 'vitest';
import { postfixRoot } from './fixtures.js';
import { scopePluginSuite } from './suite.js';

const api = { describe, it, expect: expect as never };

scopePluginSuite(api, { plugin: netPlugin, makeRoot: () => postfixRoot(), samples: [{ scope: 'net.hostname', args: ['Mail.Example.COM.'] }] });

scopePluginSuite(api, {
  plugin: mailPlugin,
  makeRoot: () => postfixRoot(),
  samples: [
    { scope: 'mail.smart-host', args: ['[127.0.0.1]:2525', 'alice', 'Suite-Secret-7q'], secrets: ['Suite-Secret-7q'] },
    { scope: 'mail.smart-host', args: ['relay.example.com'] },
  ],
});

scopePluginSuite(api, { plugin: cpPlugin, makeRoot: () => postfixRoot(), samples: [{ scope: 'cp.bootstrapper', args: ['postfix_relay_mynetworks', true] }] });
