#!/usr/bin/env node
// One CLI on two paths. The commands run on a fast path that loads neither oclif nor the
// schemas, so `cpcmd scope:get` starts in little more than node's own start-up; everything
// else (help, version, topics, completion, unknown words) goes through oclif. CPCMD_OCLIF=1
// sends everything through oclif. Both read the command line with the same code (argv.js),
// after moving global flags written before the command behind it (ApisCP's `cpcmd -o json X`).
const { fastSpec, hoistGlobalFlags, runFast } = await import('../dist/fast.js');
const argv = hoistGlobalFlags(process.argv.slice(2));
const spec = process.env.CPCMD_OCLIF === '1' ? undefined : fastSpec(argv);
if (spec) {
  process.exitCode = await runFast(spec, argv.slice(1));
} else {
  const { execute } = await import('@oclif/core');
  await execute({ args: argv, dir: import.meta.url });
}
