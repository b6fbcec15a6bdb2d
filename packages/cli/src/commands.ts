import { Args, Command, Flags } from '@oclif/core';
import { runFast } from './fast.js';
import { type CommandSpec, type FlagSpec, commands, globalFlags } from './specs.js';

function oclifFlag(f: FlagSpec, global: boolean) {
  const common = {
    description: f.description,
    ...(f.char ? { char: f.char as never } : {}),
    ...(f.env ? { env: f.env } : {}),
    ...(global ? { helpGroup: 'GLOBAL' } : {}),
  };
  if (f.type === 'boolean') return Flags.boolean({ ...common, ...(f.allowNo ? { allowNo: true } : {}) });
  if (f.type === 'integer') return Flags.integer({ ...common, min: 0 });
  return Flags.string({ ...common, ...(f.options ? { options: [...f.options] } : {}) });
}

/**
 * The oclif command for a declaration. oclif shows its help (usage, variadic arguments,
 * flags, examples), writes it into oclif.manifest.json and completes it; running it parses
 * the words with the same reader as the fast path (argv.ts) and runs the same code, so
 * `CPCMD_OCLIF=1 cpcmd ...` and `cpcmd ...` are one CLI.
 */
function commandFrom(spec: CommandSpec): typeof Command {
  return class extends Command {
    static override id = spec.id;
    static override summary = spec.summary;
    static override description = spec.description ?? spec.summary;
    static override examples = spec.examples;
    static override hidden = spec.hidden ?? false;
    static override args = Object.fromEntries(
      spec.args.map((a) => [a.name, Args.string({ description: a.description, required: a.required ?? false, ...(a.variadic ? { multiple: true } : {}) })]),
    );
    static override flags = {
      ...Object.fromEntries(Object.entries(spec.flags).map(([n, f]) => [n, oclifFlag(f, false)])),
      ...Object.fromEntries(Object.entries(globalFlags).map(([n, f]) => [n, oclifFlag(f, true)])),
    };

    async run(): Promise<void> {
      // Parsed by argv.ts (the fast path's reader), not by this.parse: one reader for both paths.
      this.parsed = true;
      const code = await runFast(spec, this.argv);
      if (code !== 0) process.exitCode = code;
    }
  };
}

/** Every command, for oclif's explicit command discovery. */
export const COMMANDS: Record<string, typeof Command> = Object.fromEntries(commands.map((s) => [s.id, commandFrom(s)]));
