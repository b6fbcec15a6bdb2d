import { Help } from '@oclif/core';
import { globalFlags } from './specs.js';

/**
 * cpcmd's help: the root lists every command (not only topics), with ApisCP's order in the
 * usage line and the global flags, which go before or after the command.
 */
export default class CpcmdHelp extends Help {
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
