import type { Hook } from '@oclif/core';
import { unknownCommand } from '../argv.js';

/** A word that is no command: one line with the closest command, exit 2, as for every usage error. */
const hook: Hook<'command_not_found'> = async (opts) => {
  const ids = opts.config.commands.filter((c) => !c.hidden).map((c) => c.id);
  process.stderr.write(unknownCommand(opts.id, ids));
  process.exitCode = 2;
};

export default hook;
