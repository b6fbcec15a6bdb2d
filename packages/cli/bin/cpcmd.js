#!/usr/bin/env node
// One CLI on two paths. The commands run on a fast path that loads neither oclif nor the
// schemas, so `cpcmd scope:get` starts in little more than node's own start-up; everything
// else (help, version, topics, completion, unknown words) goes through oclif. CPCMD_OCLIF=1
// sends everything through oclif. Both read the command line with the same code (argv.js),
// after moving global flags written before the command behind it (ApisCP's `cpcmd -o json X`).
//
// This file is CommonJS (bin/package.json), and the fast path is loaded from its CommonJS
// bundle (made by the build) while the files it was made from are unchanged: node's ES module
// loader then never starts, a good part of a command's start-up. Else it comes from dist/fast.js.
'use strict';
const { readFileSync, statSync } = require('node:fs');
const path = require('node:path');

const dist = path.join(__dirname, '../dist');

/**
 * Whether dist/fast.bundle.cjs was made from the files as they are now: each the same size and
 * mtime as then, or, once copied or restored from a build cache (new mtimes), the same bytes.
 * A file that is not there counts as unchanged: an installed package may hold only the bundle.
 */
function bundleFresh() {
  try {
    const inputs = JSON.parse(readFileSync(path.join(dist, 'fast.bundle.json'), 'utf8')).map(([file, size, mtime]) => {
      const at = path.join(dist, file);
      return { at, size, mtime, now: statSync(at, { throwIfNoEntry: false }) };
    });
    if (inputs.every(({ size, mtime, now }) => !now || (now.size === size && now.mtimeMs === mtime))) return true;
    if (inputs.some(({ size, now }) => now && now.size !== size)) return false;
    const was = readFileSync(path.join(dist, 'fast.bundle.inputs'));
    let offset = 0;
    for (const { at, size, now } of inputs) {
      if (now && !readFileSync(at).equals(was.subarray(offset, offset + size))) return false;
      offset += size;
    }
    return offset === was.length;
  } catch {
    return false;
  }
}

async function main() {
  const { fastSpec, hoistGlobalFlags, runFast } = bundleFresh() ? require('../dist/fast.bundle.cjs') : await import('../dist/fast.js');
  const argv = hoistGlobalFlags(process.argv.slice(2));
  const spec = process.env.CPCMD_OCLIF === '1' ? undefined : fastSpec(argv);
  if (spec) {
    process.exitCode = await runFast(spec, argv.slice(1));
  } else {
    const { execute } = await import('@oclif/core');
    // The package's own directory: oclif finds its config in the package.json there (not bin/'s).
    await execute({ args: argv, dir: path.join(__dirname, '..') });
  }
}

main().catch((err) => {
  process.exitCode = 1;
  throw err;
});
