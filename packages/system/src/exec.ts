import { execFile } from 'node:child_process';

/** The outcome of a command that exited 0. */
export interface ExecResult {
  stdout: string;
  stderr: string;
}

/** A command that failed: non-zero exit, a signal, a time-out, or not found. */
export class ExecError extends Error {
  override readonly name = 'ExecError';
  constructor(
    readonly command: string,
    readonly code: number | string | null,
    readonly stderr: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ExecOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Run as this user and group (for a daemon that does not drop root itself). */
  uid?: number;
  gid?: number;
  /**
   * Done when the program exits 0, without waiting for what it left running in the background
   * to close the output it inherited (`postfix reload` leaves postsuper tidying the queue). Its
   * output may then be incomplete: for commands whose success is all that is needed. A failure
   * is reported as always, with its stderr, once the output has closed.
   */
  untilExit?: boolean;
}

/**
 * Run a program with an argument array, never through a shell, so no value can be read as
 * shell syntax. Rejects with ExecError carrying stderr on failure.
 */
export function exec(file: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 * 1024 * 1024, env: opts.env ?? process.env, encoding: 'utf8', uid: opts.uid, gid: opts.gid },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
        const code = e.code ?? null;
        const why = e.killed ? `timed out after ${opts.timeoutMs ?? 30_000} ms` : code === 'ENOENT' ? 'not found' : `exited with ${String(code ?? e.signal)}`;
        const detail = stderr.trim().split('\n').slice(-3).join(' | ');
        reject(new ExecError(file, typeof code === 'number' || typeof code === 'string' ? code : null, stderr, `${file} ${why}${detail ? `: ${detail}` : ''}`));
      },
    );
    // The output goes on being read (and dropped) until whatever holds it closes it: nothing left in the background is cut off.
    if (opts.untilExit) child.once('exit', (code) => code === 0 && resolve({ stdout: '', stderr: '' }));
  });
}
