import { type Command, Help } from '@oclif/core';
import { builtScopes, globalFlags } from './specs.js';

/** The commands whose first argument is a scope: their help also shows that scope's usage and examples. */
const SCOPE_COMMANDS = new Set(['scope:set', 'scope:get', 'scope:info', 'scope:reset', 'scope:check']);

/**
 * cpcmd's help: the root lists every command (not only topics), with ApisCP's order in the
 * usage line and the global flags, which go before or after the command.
 */
export default class CpcmdHelp extends Help {
  private argv: string[] = [];

  override async showHelp(argv: string[]): Promise<void> {
    this.argv = argv;
    await super.showHelp(argv);
  }

  /** `cpcmd scope:set mail.transport --help`: the command's help, then the first-party scope's own usage and examples. */
  override async showCommandHelp(command: Command.Loadable): Promise<void> {
    await super.showCommandHelp(command);
    if (!SCOPE_COMMANDS.has(command.id)) return;
    const words = this.argv.filter((a) => !a.startsWith('-') && a !== command.id);
    const scope = (await builtScopes()).find((s) => words.includes(s.name));
    if (!scope) return;
    const lines = [
      scope.summary,
      '',
      command.id === 'scope:set' ? `$ cpcmd scope:set ${scope.name} ${scope.usage}` : `$ cpcmd ${command.id} ${scope.name}`,
      '',
      ...scope.examples.map((e) => `$ ${e}`),
      '',
      `cpcmd scope:info ${scope.name} explains it in full.`,
    ];
    this.log(this.section(`SCOPE ${scope.name}`, lines.join('\n')));
    this.log('');
  }

  protected override async showRootHelp(): Promise<void> {
    this.log(this.formatRoot().replace('[COMMAND]', '[-o cli|json|yaml] COMMAND [ARGS...] [FLAGS]'));
    this.log('');
    this.log(this.formatCommands(this.sortedCommands.filter((c) => c.id)));
    this.log('');
    const rows = Object.entries(globalFlags).map(([name, f]) => {
      const value = f.type === 'boolean' ? '' : `=${f.options ? f.options.join('|') : '<value>'}`;
      return [`${f.char ? `-${f.char}, ` : '    '}--${name}${value}`, `${f.description}${f.env ? ` [env: ${f.env}]` : ''}`];
    });
    this.log(this.section('GLOBAL FLAGS', this.renderList(rows, { indentation: 2, spacer: '\n', stripAnsi: this.opts.stripAnsi })));
    this.log('');
  }
}
