/**
 * The rspamd configuration scoped writes: local.d files (merged over Debian's defaults, which
 * stay untouched) that put rspamd's workers on scoped's endpoints, make the proxy a milter that
 * scans by itself, give it Redis, and add its headers to every message; and, where rspamd only
 * serves beside another filter or for DKIM signing, a hook that keeps its milter from ever
 * refusing mail.
 */
import type { Endpoint } from '@scoped/sdk';

/** The words that mark a file as scoped's: scoped rewrites or removes only files that carry them. */
export const OWN_MARK = 'Written by scoped (mail.spam-filter)';
const HEAD = `# ${OWN_MARK}; scoped rewrites or removes this file: put your own settings in override.d.\n`;

/** The files scoped writes under rspamd's config dir, as paths inside the root. */
export const RSPAMD_FILES = {
  proxy: '/etc/rspamd/local.d/worker-proxy.inc',
  normal: '/etc/rspamd/local.d/worker-normal.inc',
  controller: '/etc/rspamd/local.d/worker-controller.inc',
  redis: '/etc/rspamd/local.d/redis.conf',
  headers: '/etc/rspamd/local.d/milter_headers.conf',
  hook: '/etc/rspamd/rspamd.conf.local',
  noReject: '/etc/rspamd/scoped-no-reject.lua',
} as const;

export type RspamdFile = keyof typeof RSPAMD_FILES;

/** How rspamd serves: as the spam filter (it refuses spam), or beside SpamAssassin or for DKIM only (it refuses nothing). */
export type RspamdMode = 'filter' | 'passive';

const addr = (e: Endpoint) => `${e.host}:${e.port}`;

export interface RspamdEndpoints {
  milter: Endpoint;
  normal: Endpoint;
  controller: Endpoint;
  /** Redis, when it is installed to give rspamd its Bayes store. */
  redis?: Endpoint;
}

/** Each file's content for this mode; a file absent from the answer is one scoped does not want. */
export function rspamdFiles(mode: RspamdMode, at: RspamdEndpoints): Partial<Record<RspamdFile, string>> {
  const files: Partial<Record<RspamdFile, string>> = {
    proxy: `${HEAD}bind_socket = "${addr(at.milter)}";\nmilter = yes;\ntimeout = 120s;\nupstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n`,
    normal: `${HEAD}bind_socket = "${addr(at.normal)}";\n`,
    controller: `${HEAD}bind_socket = "${addr(at.controller)}";\n`,
    // Mail from this machine and from logged-in users gets the headers too: that is what a submitted test message is.
    headers: `${HEAD}extended_spam_headers = true;\nskip_local = false;\nskip_authenticated = false;\n`,
  };
  if (at.redis) files.redis = `${HEAD}servers = "${addr(at.redis)}";\n`;
  if (mode === 'passive') {
    files.hook = `${HEAD}lua = "$LOCAL_CONFDIR/scoped-no-reject.lua";\n`;
    files.noReject =
      `-- ${OWN_MARK}; scoped rewrites or removes this file.\n` +
      '-- rspamd serves beside SpamAssassin or for DKIM signing only: its milter never refuses, holds or\n' +
      '-- rewrites mail; it still adds its headers and signs. A connection filter runs before anything\n' +
      '-- else, even before a test pattern (GTUBE) ends the scan.\n' +
      "rspamd_config:register_symbol({\n  name = 'SCOPED_NO_REJECT',\n  type = 'connfilter',\n" +
      '  callback = function(task)\n    task:set_milter_reply({ no_action = true })\n  end,\n})\n';
  }
  return files;
}

/** Whether a file's text is scoped's own (absent files are nobody's). */
export function ownFile(text: string | null): boolean {
  return text?.includes(OWN_MARK) ?? false;
}
