import { Client } from '@scoped/client/light';
import type { Endpoint } from '@scoped/client/light';
import { CliError, ExitCodes, exitCodeOf, formatError } from './errors.js';
import type { CommandSpec, Outcome } from './specs.js';
import { escapeControls, terminalJson, terminalYaml } from './terminal.js';

export const DEFAULT_SOCKET = '/run/scoped/scoped.sock';

/** What in a token cannot be part of one (tokens are printable ASCII without spaces), or undefined. */
function tokenProblem(token: string): string | undefined {
  if (/[\r\n]/.test(token)) return 'a line break';
  if (/[\x00-\x1f\x7f]/.test(token)) return 'a control character';
  if (/\s/.test(token)) return 'a space';
  if (/[^\x21-\x7e]/.test(token)) return 'a character outside ASCII';
  return undefined;
}

/**
 * The daemon the flags and the environment name. A flag beats any environment variable:
 * `--socket` or `--url` (not both). Without either, SCOPED_URL (with SCOPED_TOKEN) beats
 * SCOPED_SOCKET, and the default is the socket /run/scoped/scoped.sock. An empty variable
 * counts as unset.
 */
export function endpointFrom(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Endpoint {
  const socket = flags.socket as string | undefined;
  const url = flags.url as string | undefined;
  if (socket !== undefined && url !== undefined) throw new CliError('--socket and --url name two daemons: give one of them', ExitCodes.usage);
  if (url !== undefined) return withToken(url, env.SCOPED_TOKEN);
  if (socket !== undefined) return { socket };
  if (env.SCOPED_URL) return withToken(env.SCOPED_URL, env.SCOPED_TOKEN);
  return { socket: env.SCOPED_SOCKET || DEFAULT_SOCKET };
}

function withToken(url: string, token: string | undefined): Endpoint {
  if (!token) return { url };
  // A token captured with its note or a trailing line break cannot go into a header: say so, not Node's header error.
  const odd = tokenProblem(token);
  if (odd) {
    throw new CliError(
      `SCOPED_TOKEN holds more than a token: it has ${odd}, which no token has`,
      ExitCodes.usage,
      'set it to the token alone, as cpcmd token:create prints it on stdout: export SCOPED_TOKEN=$(cpcmd token:create --role reader)',
    );
  }
  return { url, token };
}

/** The output format the flags ask for. */
export function formatFrom(flags: Record<string, unknown>): 'cli' | 'json' | 'yaml' {
  if (flags.json) return 'json';
  const o = (flags.output as string | undefined) ?? 'cli';
  if (o !== 'cli' && o !== 'json' && o !== 'yaml') throw new CliError(`-o takes cli, json or yaml, not ${o}`, ExitCodes.usage);
  return o;
}

/**
 * Print an outcome. Every form is safe for a terminal: the cli text was rendered with values
 * escaped and is escaped once more as a whole (keeping its own lines), JSON and YAML escape
 * what their serializers leave raw and still parse back to the same data.
 */
async function print(outcome: Outcome, format: 'cli' | 'json' | 'yaml'): Promise<void> {
  if (format === 'json') process.stdout.write(`${terminalJson(outcome.data)}\n`);
  else if (format === 'yaml') process.stdout.write(await terminalYaml(outcome.data));
  else {
    if (outcome.text !== undefined && outcome.text !== '') process.stdout.write(`${escapeControls(outcome.text, true)}\n`);
    if (outcome.notice) process.stderr.write(`${escapeControls(outcome.notice, true)}\n`);
  }
}

/** Run a command with parsed and checked args and flags; prints, and returns the exit code. */
export async function execute(spec: CommandSpec, args: string[], flags: Record<string, unknown>): Promise<number> {
  let client: Client | undefined;
  try {
    const format = formatFrom(flags);
    client = await Client.connect(endpointFrom(flags));
    const outcome = await spec.run({ args, flags }, client);
    await print(outcome, format);
    return outcome.exitCode ?? ExitCodes.ok;
  } catch (err) {
    process.stderr.write(formatError(err));
    return exitCodeOf(err);
  } finally {
    await client?.close();
  }
}
