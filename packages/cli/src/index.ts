export { ArgumentSyntaxError, formatWord, parseArgs, parseWord, readArgs, readWord } from './grammar.js';
export type { ArgValue, TypedWord } from './grammar.js';
export { CliError, ExitCodes, exitCodeOf, formatError } from './errors.js';
export { endpointFrom, execute, formatFrom } from './runner.js';
export { fastSpec, parseCommandLine, runFast } from './fast.js';
export { commands, commandsById, globalFlags } from './specs.js';
export type { ArgSpec, CommandSpec, FlagSpec, Outcome } from './specs.js';
