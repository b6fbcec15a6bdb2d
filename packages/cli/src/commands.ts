import { Args, Command, Flags } from '@oclif/core';
import { execute } from './runner.js';
import { type CommandSpec, type FlagSpec, commands, globalFlags } from './specs.js';

function oclifFlag(f: FlagSpec) {
  const common = { description: f.description, ...(f.char ? { char: f.char as never } : {}), ...(f.env ? { env: f.env } : {}) };
  if (f.type === 'boolean') return Flags.boolean({ ...common, ...(f.allowNo ? { allowNo: true } : {}) });
  if (f.type === 'integer') return Flags.integer({ ...common, min: 0 });
  return Flags.string({ ...common, ...(f.options ? { options: [...f.options] } : {}) });
}

/** An oclif command made from a spec; the same spec drives the fast path, so both behave alike. */
function commandFrom(spec: CommandSpec): typeof Command {
  const allFlags = { ...globalFlags, ...spec.flags };
  return class extends Command {
    static override id = spec.id;
    static override summary = spec.summary;
    static override description = spec.description ?? spec.summary;
    static override examples = spec.examples;
    static override strict = !spec.args.some((a) => a.variadic);
    static override args = Object.fromEntries(
      spec.args.filter((a) => !a.variadic).map((a) => [a.name, Args.string({ description: a.description, required: a.required ?? false })]),
    );
    static override flags = Object.fromEntries(Object.entries(allFlags).map(([n, f]) => [n, oclifFlag(f)]));

    async run(): Promise<void> {
      const { argv, flags } = await this.parse(this.constructor as typeof Command);
      const code = await execute(spec, argv as string[], flags);
      if (code !== 0) this.exit(code);
    }
  };
}

/** Every command, for oclif's explicit command discovery. */
export const COMMANDS: Record<string, typeof Command> = Object.fromEntries(commands.map((s) => [s.id, commandFrom(s)]));
