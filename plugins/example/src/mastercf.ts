/**
 * The plugin's own services in master.cf, each a block that starts with a marker comment, so
 * they can be found, rewritten and removed without touching any other line.
 */
const MARK = '# scoped mail.transport:';

export const SERVICE_BLOCKS: Record<'relaylim' | 'oneshot', string> = {
  // One connection at a time per destination: relaylim_destination_concurrency_limit = 1 in main.cf.
  relaylim: `${MARK} relaylim (deliver in serial)\nrelaylim  unix  -       -       n       -       -       smtp\n  -o syslog_name=postfix/relaylim\n`,
  // Temporary failures become permanent, so a message is tried once and never retried.
  oneshot: `${MARK} oneshot (deliver once, never retry)\noneshot   unix  -       -       n       -       -       smtp\n  -o syslog_name=postfix/oneshot\n  -o smtp_delivery_status_filter=regexp:$config_directory/oneshot-status\n`,
};

/** master.cf without any block of ours (a block: the marker line and the lines up to the next blank, comment or service). */
export function withoutOurBlocks(text: string): string {
  const out: string[] = [];
  let skipping = false;
  for (const line of text.split('\n')) {
    if (line.startsWith(MARK)) {
      skipping = true;
      continue;
    }
    if (skipping && ((/^\S/.test(line) && !/^(relaylim|oneshot)\s/.test(line)) || line === '')) skipping = false;
    if (!skipping) out.push(line);
  }
  return out.join('\n');
}

/** master.cf with exactly the wanted blocks of ours, appended at the end. */
export function masterCfWith(text: string, services: readonly ('relaylim' | 'oneshot')[]): string {
  let base = withoutOurBlocks(text);
  if (!base.endsWith('\n')) base += '\n';
  return base + services.map((s) => SERVICE_BLOCKS[s]).join('');
}
