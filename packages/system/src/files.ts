import { randomBytes } from 'node:crypto';
import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { crashpoint } from './crash.js';

/**
 * The host path of `p` (absolute, as seen inside the root). Refuses paths that would leave
 * the root, so a value can never point a write outside the sandbox.
 */
export function hostPath(root: string, p: string): string {
  if (!p.startsWith('/')) throw new Error(`path must be absolute inside the root: ${p}`);
  const normalized = path.posix.normalize(p);
  if (normalized.split('/').includes('..')) throw new Error(`path leaves the root: ${p}`);
  return path.join(root, normalized);
}

/**
 * Write a file atomically: a temp file in the same directory, created with its final mode
 * and owner (so a secret is never readable by others, not even briefly), fsynced, then renamed over
 * the target, and the directory fsynced so the rename survives a crash.
 */
export async function writeFileAtomic(file: string, content: string | Buffer, mode: number, mtime?: Date, owner?: { uid: number; gid: number }): Promise<void> {
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  crashpoint();
  try {
    // Its owner before its first byte (a 0600 key is the daemon's, never root's copy), then the exact mode (chown clears set-id bits).
    if (owner) await handle.chown(owner.uid, owner.gid);
    await handle.chmod(mode); // the umask may have narrowed or the mode widened nothing; make it exact
    await handle.writeFile(content);
    crashpoint();
    if (mtime) await handle.utimes(mtime, mtime);
    await handle.sync();
    crashpoint();
  } catch (err) {
    await handle.close();
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  crashpoint();
  await syncDir(dir);
  crashpoint();
}

/** Temp files a write interrupted by a crash left beside `file`. */
export async function strayTempFiles(file: string): Promise<string[]> {
  const dir = path.dirname(file);
  const base = path.basename(file);
  try {
    return (await fs.readdir(dir)).filter((n) => n.startsWith(`.${base}.`) && n.endsWith('.tmp')).map((n) => path.join(dir, n));
  } catch {
    return [];
  }
}

async function syncDir(dir: string): Promise<void> {
  const h = await fs.open(dir, constants.O_RDONLY);
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Read a file, or null when it does not exist. */
export async function readIfExists(file: string): Promise<Buffer | null> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    if (absent(err)) return null;
    throw err;
  }
}

/** A file's owner and group, or null when it does not exist. */
export async function ownerIfExists(file: string): Promise<{ uid: number; gid: number } | null> {
  try {
    const st = await fs.stat(file);
    return { uid: st.uid, gid: st.gid };
  } catch (err) {
    if (absent(err)) return null;
    throw err;
  }
}

/** The permission bits of a file, or null when it does not exist. */
export async function modeIfExists(file: string): Promise<number | null> {
  try {
    return (await fs.stat(file)).mode & 0o7777;
  } catch (err) {
    if (absent(err)) return null;
    throw err;
  }
}

/** Remove a file durably; nothing when it is already gone. */
export async function removeFile(file: string): Promise<void> {
  crashpoint();
  try {
    await fs.unlink(file);
  } catch (err) {
    // A file under a path whose directory is a file is gone too (a rollback of a write that failed on that path removes it).
    if (absent(err)) return;
    throw err;
  }
  await syncDir(path.dirname(file));
  crashpoint();
}

/** Not there: the file is missing, or a directory above it is not a directory. */
function absent(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
