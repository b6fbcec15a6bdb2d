import { checkArgs, parseCommandLine } from './argv.js';
import { formatError } from './errors.js';
import { execute } from './runner.js';
import { type CommandSpec, commandsById } from './specs.js';

export { hoistGlobalFlags, parseCommandLine } from './argv.js';

/**
 * The command argv runs on the fast path: a declared command, without a request for help.
 * Anything else (help, version, topics, completion, unknown words) goes to oclif.
 */
export function fastSpec(argv: readonly string[]): CommandSpec | undefined {
  const [id, ...rest] = argv;
  if (!id) return undefined;
  const spec = commandsById.get(id);
  if (!spec) return undefined;
  const flagsEnd = rest.indexOf('--');
  const head = flagsEnd >= 0 ? rest.slice(0, flagsEnd) : rest;
  if (head.includes('--help') || head.includes('-h')) return undefined;
  return spec;
}

/** Run a command from the words after its id: parse, check, call, print. Returns the exit code. */
export async function runFast(spec: CommandSpec, argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(spec, argv);
    checkArgs(spec, parsed.args);
  } catch (err) {
    process.stderr.write(formatError(err));
    return 2;
  }
  return execute(spec, parsed.args, parsed.flags);
}
