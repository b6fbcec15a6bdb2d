/**
 * Whether plugin code may be trusted to run as root, checked the way sshd's StrictModes checks
 * a user's keys: everything a plugin is loaded from must be owned by root and writable by
 * nobody else, and so must every directory above it, or someone other than root could change
 * the code scoped is about to run as root.
 */
import { type Stats, lstatSync, readdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';

/** What the admin is told along with any refusal. */
const WHY = 'scoped runs plugins as root, so a plugin, every file in it and every directory above it must be owned by root and writable only by root';

/** A path's numeric mode as ls shows it. */
const octal = (st: Stats) => (st.mode & 0o7777).toString(8).padStart(4, '0');

/**
 * Why one path cannot be trusted, or undefined. An ancestor directory that is sticky and
 * root-owned (like /tmp, mode 1777) passes although others may write to it: the sticky bit
 * lets nobody but root and an entry's owner rename or remove that entry, and the entry below
 * it is itself checked to be root's, so nobody else can swap it.
 */
function pathProblem(p: string, st: Stats, role: 'ancestor' | 'own'): string | undefined {
  if (st.isSymbolicLink()) return undefined; // its mode means nothing; the directory holding it is checked
  const notRoot = st.uid !== 0;
  const writable = (st.mode & 0o022) !== 0 && !(role === 'ancestor' && st.isDirectory() && (st.mode & 0o1000) !== 0 && !notRoot);
  if (!notRoot && !writable) return undefined;
  const found = [notRoot ? `owned by uid ${st.uid}, not root` : '', writable ? `writable by ${st.mode & 0o002 ? 'everyone' : 'its group'}` : '']
    .filter(Boolean)
    .join(' and ');
  const fix = [notRoot ? `chown root ${p}` : '', writable ? `chmod go-w ${p}` : ''].filter(Boolean).join(' && ');
  return `untrusted: ${p} is ${found} (mode ${octal(st)}); ${WHY}: ${fix}`;
}

/** Checks paths, remembering each answer: the same directories come up for every plugin. */
export class TrustChecker {
  private readonly seen = new Map<string, string | undefined>();
  private readonly trustedReal: readonly string[];

  /**
   * `alreadyLoaded`: directories of code the daemon itself has loaded (its own @scoped/sdk).
   * A plugin's symlink into them (how npm links a workspace's sdk) is not walked again: that
   * code already runs in the daemon, so a plugin adds no trust to it by linking to it.
   */
  constructor(alreadyLoaded: readonly string[] = []) {
    this.trustedReal = alreadyLoaded.map((d) => realpathSync(d));
  }

  /** Why a plugin directory (`--plugin DIR` or one directory in `--plugin-dir`) cannot be trusted, or undefined. */
  plugin(dir: string): string | undefined {
    return this.above(dir) ?? this.tree(dir);
  }

  /** Why a file a plugin names (its entry file, which package.json may place anywhere) cannot be trusted, or undefined. */
  file(p: string): string | undefined {
    return this.above(p) ?? this.tree(p);
  }

  /** Why the `--plugin-dir` directory itself cannot be trusted (anyone able to write to it could add a plugin), or undefined. */
  container(dir: string): string | undefined {
    return this.above(dir) ?? this.one(path.resolve(dir), 'own');
  }

  /** Every directory above a path, both as given and as its real path (a symlink on the way could be swapped). */
  private above(given: string): string | undefined {
    const abs = path.resolve(given);
    let real: string;
    try {
      real = realpathSync(abs);
    } catch (err) {
      return `cannot read ${abs}: ${(err as Error).message}`;
    }
    for (const start of new Set([abs, real])) {
      for (let p = path.dirname(start); ; p = path.dirname(p)) {
        const problem = this.one(p, 'ancestor');
        if (problem) return problem;
        if (p === path.dirname(p)) break;
      }
    }
    return undefined;
  }

  /** The directory and everything under it; symlinks are followed to what node would import. */
  private tree(dir: string): string | undefined {
    const visited = new Set<string>();
    const walk = (p: string): string | undefined => {
      const problem = this.one(p, 'own');
      if (problem) return problem;
      const st = lstatSync(p);
      if (st.isSymbolicLink()) return this.link(p, visited, walk);
      if (!st.isDirectory()) return undefined;
      if (visited.has(p)) return undefined;
      visited.add(p);
      for (const name of readdirSync(p).sort()) {
        const problem = walk(path.join(p, name));
        if (problem) return problem;
      }
      return undefined;
    };
    return walk(path.resolve(dir));
  }

  /** A symlink inside a plugin: its target, the directories above the target, and what lies under it. */
  private link(p: string, visited: Set<string>, walk: (p: string) => string | undefined): string | undefined {
    let target: string;
    try {
      target = realpathSync(p);
    } catch {
      return undefined; // dangling: node cannot import through it either
    }
    if (this.trustedReal.some((t) => target === t || target.startsWith(`${t}${path.sep}`))) return undefined;
    if (visited.has(target)) return undefined;
    return this.above(target) ?? walk(target);
  }

  private one(p: string, role: 'ancestor' | 'own'): string | undefined {
    const key = `${role}:${p}`;
    if (!this.seen.has(key)) {
      let problem: string | undefined;
      try {
        problem = pathProblem(p, role === 'ancestor' ? statSync(p) : lstatSync(p), role);
      } catch (err) {
        problem = `cannot read ${p}: ${(err as Error).message}`;
      }
      this.seen.set(key, problem);
    }
    return this.seen.get(key);
  }
}
