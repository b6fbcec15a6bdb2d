import { ConfigError, USAGE, loadConfig } from './config.js';
import { startDaemon } from './daemon.js';

/** The scoped binary: parse flags, start, and stop cleanly on SIGTERM or SIGINT. */
export async function main(argv: readonly string[]): Promise<void> {
  let config;
  try {
    config = loadConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`scoped: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (config === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  let daemon;
  try {
    daemon = await startDaemon(config);
  } catch (err) {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'cannot start', error: (err as Error).message })}\n`);
    process.exit(1);
  }
  const stop = (signal: string) => {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'info', msg: 'shutting down', signal })}\n`);
    daemon.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
