import { CliError, ExitCodes, formatError } from './errors.js';
import { execute } from './runner.js';
import { escapeControls } from './terminal.js';
import { type CommandSpec, type FlagSpec, commandsById, globalFlags } from './specs.js';

const NUMBER = /^-\d/;

/**
 * Parse argv for a command by its spec, without oclif: known flags (long, short, --no-,
 * --flag=value), `--` ends flags, and anything else is an argument, including words that
 * start with a dash followed by a digit (negative numbers).
 */
export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): { args: string[]; flags: Record<string, unknown> } {
  const specs: Record<string, FlagSpec> = { ...globalFlags, ...spec.flags };
  const byChar = new Map(Object.entries(specs).filter(([, f]) => f.char).map(([n, f]) => [f.char!, n]));
  const flags: Record<string, unknown> = {};
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (!word.startsWith('-') || word === '-' || NUMBER.test(word)) {
      args.push(word);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (word.startsWith('--')) {
      const eq = word.indexOf('=');
      name = eq > 0 ? word.slice(2, eq) : word.slice(2);
      if (eq > 0) inline = word.slice(eq + 1);
    } else {
      const c = word.slice(1, 2);
      name = byChar.get(c) ?? c;
      if (word.length > 2) inline = word.slice(2);
    }
    const flag = specs[name];
    if (!flag && name.startsWith('no-') && specs[name.slice(3)]?.allowNo) {
      flags[name.slice(3)] = false;
      continue;
    }
    if (!flag) throw new CliError(`unknown flag ${word} for ${spec.id}`, ExitCodes.usage, `cpcmd ${spec.id} --help lists its flags; put -- before an argument that starts with a dash`);
    if (flag.type === 'boolean') {
      flags[name] = true;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new CliError(`${word} needs a value`, ExitCodes.usage);
    if (flag.options && !flag.options.includes(value)) throw new CliError(`${word} takes one of ${flag.options.join(', ')}, not ${value}`, ExitCodes.usage);
    if (flag.type === 'integer') {
      if (!/^\d+$/.test(value)) throw new CliError(`${word} takes a whole number, not ${value}`, ExitCodes.usage);
      flags[name] = Number(value);
    } else flags[name] = value;
  }
  return { args, flags };
}

/** Whether argv can take the fast path: a known command and no request for help. */
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

/**
 * The message for a word that looks like a command but is none: the closest command by
 * edit distance, or the list. Undefined for words oclif should handle (help, topics, flags).
 */
export function unknownCommand(argv: readonly string[]): string | undefined {
  const id = argv[0];
  if (!id || id.startsWith('-') || id === 'help' || !id.includes(':') || commandsById.has(id)) return undefined;
  const ids = [...commandsById.keys()];
  const near = ids.map((c) => [c, editDistance(id, c)] as const).sort((a, b) => a[1] - b[1])[0];
  const hint = near && near[1] <= 3 ? `did you mean ${near[0]}?` : `commands: ${ids.join(', ')}`;
  return `cpcmd: unknown command ${escapeControls(id)}; ${hint}\n`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/** Run a command without loading oclif; returns the exit code. */
export async function runFast(spec: CommandSpec, argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseCommandLine(spec, argv);
  } catch (err) {
    process.stderr.write(formatError(err));
    return ExitCodes.usage;
  }
  return execute(spec, parsed.args, parsed.flags);
}
