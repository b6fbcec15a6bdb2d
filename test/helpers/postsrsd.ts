/** PostSRSd as scoped runs it on a sandbox root: its pid, and stopping whatever of it a test left. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { killPids, pidsMentioning } from './proc.js';
import { waitFor } from './scoped.js';

const pidFile = (root: string) => path.join(root, 'run/postsrsd/postsrsd.pid');

/** A process that exists and has not exited (a zombie waits only for its parent to collect its status). */
function live(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** postsrsd's pid under the root, when it runs. */
export function postsrsdPid(root: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidFile(root), 'utf8').trim());
    return pid > 0 && live(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whatever postsrsd of this root still runs (found by its pid file and by its chroot on the command line). */
export async function stopPostsrsd(root: string): Promise<void> {
  const pids = new Set(pidsMentioning(path.join(root, 'var/lib/postsrsd')));
  const main = postsrsdPid(root);
  if (main) pids.add(main);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  await waitFor('postsrsd to exit', () => ([...pids].some(live) ? undefined : true), 10_000).catch(() => killPids(pids));
}
