#!/usr/bin/env node
// The everyday commands run on a fast path that loads neither oclif nor the schemas, so
// `cpcmd scope:get` starts in little more than node's own start-up; help, topics and
// suggestions for unknown commands go through oclif. CPCMD_OCLIF=1 forces oclif.
const argv = process.argv.slice(2);
if (process.env.CPCMD_OCLIF !== '1') {
  const { fastSpec, runFast, unknownCommand } = await import('../dist/fast.js');
  const spec = fastSpec(argv);
  const unknown = spec ? undefined : unknownCommand(argv);
  if (spec) {
    process.exitCode = await runFast(spec, argv.slice(1));
  } else if (unknown) {
    process.stderr.write(unknown);
    process.exitCode = 2;
  } else {
    await runOclif();
  }
} else {
  await runOclif();
}

async function runOclif() {
  const { execute } = await import('@oclif/core');
  await execute({ dir: import.meta.url });
}
