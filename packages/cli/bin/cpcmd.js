#!/usr/bin/env node
// One CLI on two paths. The commands run on a fast path that loads neither oclif nor the
// schemas, so `cpcmd scope:get` starts in little more than node's own start-up; everything
// else (help, version, topics, completion, unknown words) goes through oclif. CPCMD_OCLIF=1
// sends everything through oclif. Both read the command line with the same code (argv.js),
// after moving global flags written before the command behind it (ApisCP's `cpcmd -o json X`).
// The fast path is loaded from its bundle (one file, made by the build) while the files it was
// made from are unchanged, else from dist/fast.js itself.
import { readFileSync, statSync } from 'node:fs';

/**
 * Whether dist/fast.bundle.js was made from the files as they are now: each the same size and
 * mtime as then, or, once copied or restored from a build cache (new mtimes), the same bytes.
 * A file that is not there counts as unchanged: an installed package may hold only the bundle.
 */
function bundleFresh() {
  const dist = new URL('../dist/', import.meta.url);
  try {
    const inputs = JSON.parse(readFileSync(new URL('fast.bundle.json', dist), 'utf8')).map(([file, size, mtime]) => {
      const url = new URL(file, dist);
      return { url, size, mtime, now: statSync(url, { throwIfNoEntry: false }) };
    });
    if (inputs.every(({ size, mtime, now }) => !now || (now.size === size && now.mtimeMs === mtime))) return true;
    if (inputs.some(({ size, now }) => now && now.size !== size)) return false;
    const was = readFileSync(new URL('fast.bundle.inputs', dist));
    let at = 0;
    for (const { url, size, now } of inputs) {
      if (now && !readFileSync(url).equals(was.subarray(at, at + size))) return false;
      at += size;
    }
    return at === was.length;
  } catch {
    return false;
  }
}

const { fastSpec, hoistGlobalFlags, runFast } = bundleFresh() ? await import('../dist/fast.bundle.js') : await import('../dist/fast.js');
const argv = hoistGlobalFlags(process.argv.slice(2));
const spec = process.env.CPCMD_OCLIF === '1' ? undefined : fastSpec(argv);
if (spec) {
  process.exitCode = await runFast(spec, argv.slice(1));
} else {
  const { execute } = await import('@oclif/core');
  await execute({ args: argv, dir: import.meta.url });
}
