/**
 * The one reader of cpcmd's command line. Both the fast path and the oclif commands parse with
 * it, so the two cannot read a command line differently; oclif routes, shows help and completes
 * from the same declarations (specs.ts). It loads neither oclif nor the schemas.
 */
import { CliError, ExitCodes } from './errors.js';
import { type CommandSpec, type FlagSpec, globalFlags } from './specs.js';
import { escapeControls } from './terminal.js';

const NUMBER = /^-\d/;
const HELP_OR_VERSION = new Set(['--help', '-h', '--version', '-v']);

/** The global flags that take their value as the next word when written without `=`. */
const globalValueWords = new Set(
  Object.entries(globalFlags)
    .filter(([, f]) => f.type !== 'boolean')
    .flatMap(([name, f]) => [`--${name}`, ...(f.char ? [`-${f.char}`] : [])]),
);

/**
 * ApisCP's order, `cpcmd [-o FMT] module:function args`: flags written before the command are
 * moved right after it, so `cpcmd -o json scope:get X` reads as `cpcmd scope:get -o json X`.
 * A flag that needs a value takes the next word with it. Help and version requests, and a line
 * with no command after its flags, are left to oclif (`cpcmd -o json --help` is `cpcmd --help`).
 */
export function hoistGlobalFlags(argv: readonly string[]): string[] {
  const lead: string[] = [];
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-') && argv[i] !== '--' && argv[i] !== '-' && !HELP_OR_VERSION.has(argv[i]!)) {
    const word = argv[i++]!;
    lead.push(word);
    if (globalValueWords.has(word) && i < argv.length) lead.push(argv[i++]!);
  }
  if (lead.length === 0 || i >= argv.length || argv[i] === '--' || argv[i] === '-') return [...argv];
  if (HELP_OR_VERSION.has(argv[i]!)) return argv.slice(i);
  const [id, ...rest] = argv.slice(i);
  // `cpcmd -o json help scope:get` is a request for help: the output format does not apply.
  if (id === 'help') return [id, ...rest];
  return [id!, ...lead, ...rest];
}

/** The usage line of a command, from its declaration: `scope:set NAME VALUE... [FLAGS]`. */
export function usageOf(spec: CommandSpec): string {
  const args = spec.args.map((a) => {
    const name = `${a.name.toUpperCase()}${a.variadic ? '...' : ''}`;
    return a.required ? name : `[${name}]`;
  });
  return [`cpcmd ${spec.id}`, ...args, '[FLAGS]'].join(' ');
}

const BOOLEAN_WORDS: Record<string, boolean> = { true: true, false: false };

/**
 * Parse a command's words (after its id) by its declaration: known flags in every form
 * (`--name value`, `--name=value`, `-o value`, `-ovalue`, `-o=value`, `--no-name`, and for a
 * boolean `--name=true|false`), `--` ends flags, and anything else is an argument, including
 * a word that starts with a dash and a digit (a negative number). A value flag given twice
 * keeps the last.
 */
export function parseCommandLine(spec: CommandSpec, argv: readonly string[]): { args: string[]; flags: Record<string, unknown> } {
  const specs: Record<string, FlagSpec> = { ...globalFlags, ...spec.flags };
  const byChar = new Map(
    Object.entries(specs)
      .filter(([, f]) => f.char)
      .map(([n, f]) => [f.char!, n]),
  );
  const flags: Record<string, unknown> = {};
  const args: string[] = [];
  const help = `cpcmd help ${spec.id} lists its flags`;
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
    let shown: string;
    let inline: string | undefined;
    if (word.startsWith('--')) {
      const eq = word.indexOf('=');
      name = eq > 0 ? word.slice(2, eq) : word.slice(2);
      shown = `--${name}`;
      if (eq > 0) inline = word.slice(eq + 1);
    } else {
      const c = word.slice(1, 2);
      name = byChar.get(c) ?? c;
      shown = `-${c}`;
      if (word.length > 2) inline = word.slice(word[2] === '=' ? 3 : 2);
    }
    const flag = specs[name];
    if (!flag) {
      const base = name.startsWith('no-') ? specs[name.slice(3)] : undefined;
      if (base?.type === 'boolean' && base.allowNo) {
        if (inline !== undefined) throw new CliError(`${escapeControls(shown)} takes no value`, ExitCodes.usage, help);
        flags[name.slice(3)] = false;
        continue;
      }
      throw new CliError(`unknown flag ${escapeControls(shown)} for ${spec.id}`, ExitCodes.usage, `${help}; put -- before an argument that starts with a dash`);
    }
    if (flag.type === 'boolean') {
      if (inline === undefined) flags[name] = true;
      else if (inline in BOOLEAN_WORDS) flags[name] = BOOLEAN_WORDS[inline];
      else
        throw new CliError(
          `${shown} is true or false, not ${escapeControls(inline)}`,
          ExitCodes.usage,
          `write ${shown} or ${flag.allowNo ? `--no-${name}` : `${shown}=false`}`,
        );
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new CliError(`${shown} needs a value`, ExitCodes.usage, help);
    if (flag.options && !flag.options.includes(value))
      throw new CliError(`${shown} takes one of ${flag.options.join(', ')}, not ${escapeControls(value)}`, ExitCodes.usage, help);
    if (flag.type === 'integer') {
      if (!/^\d+$/.test(value)) throw new CliError(`${shown} takes a whole number, not ${escapeControls(value)}`, ExitCodes.usage, help);
      flags[name] = Number(value);
    } else flags[name] = value;
  }
  return { args, flags };
}

/** The arguments a command line gives, checked against the declaration (count and required ones). */
export function checkArgs(spec: CommandSpec, args: readonly string[]): void {
  const usage = `usage: ${usageOf(spec)} (cpcmd help ${spec.id} explains it)`;
  const missing = spec.args.find((a, i) => a.required && args[i] === undefined);
  if (missing) throw new CliError(`${spec.id} needs ${missing.name.toUpperCase()}`, ExitCodes.usage, usage);
  const max = spec.args.some((a) => a.variadic) ? Infinity : spec.args.length;
  if (args.length > max) throw new CliError(`${spec.id} takes at most ${max} argument${max === 1 ? '' : 's'}; got ${args.length}`, ExitCodes.usage, usage);
}

/**
 * What cpcmd says for a word that is no command: the closest command by edit distance, or
 * where the list is. A leading flag with no command after it gets the order explained.
 */
export function unknownCommand(id: string, ids: readonly string[]): string {
  if (id.startsWith('-'))
    return `cpcmd: no command after ${escapeControls(id)}\nhint: the order is cpcmd [-o FMT] COMMAND [ARGS...]; cpcmd --help lists the commands\n`;
  const near = ids.map((c) => [c, editDistance(id, c)] as const).sort((a, b) => a[1] - b[1])[0];
  const hint = near && near[1] <= 3 ? `did you mean ${near[0]}?` : 'cpcmd --help lists the commands';
  return `cpcmd: unknown command ${escapeControls(id)}\nhint: ${hint}\n`;
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
