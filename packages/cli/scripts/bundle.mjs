#!/usr/bin/env node
// Bundles cpcmd's fast path (dist/fast.js and the modules of ours it imports; node's own modules
// and what loads lazily stay apart) into dist/fast.bundle.cjs, so a command starts by loading one
// CommonJS file instead of starting node's ES module loader to resolve and load a dozen across
// three packages. Run by the build after `tsc -b`; the source stays the TypeScript in src/.
//
// Beside it, dist/fast.bundle.json lists the files of ours the bundle was made from with their
// size and mtime, and dist/fast.bundle.inputs holds their bytes. bin/cpcmd.js loads the bundle
// only while each of them that exists is as it was (same size and mtime, or, once copied or
// restored from a build cache, the same bytes), so a later `tsc -b` alone (a bundle now stale)
// falls back to dist/fast.js rather than running old code.
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { rolldown } from 'rolldown';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const ENTRY = 'fast.bundle';

// Chunks of an earlier bundle go first: their names carry hashes.
for (const f of await readdir(dist)) {
  if (f.startsWith(ENTRY)) await rm(path.join(dist, f));
}

const bundle = await rolldown({
  input: { [ENTRY]: path.join(dist, 'fast.js') },
  platform: 'node',
  external: [/^node:/],
  logLevel: 'warn',
});
// Same directory as dist/fast.js, so paths taken from import.meta.url (../scopes.json) still hold.
const { output } = await bundle.write({ dir: dist, format: 'cjs', entryFileNames: '[name].cjs', chunkFileNames: `${ENTRY}-[name]-[hash].cjs` });
await bundle.close();

const ours = [...new Set(output.flatMap((o) => (o.type === 'chunk' ? o.moduleIds : [])))]
  .filter((id) => path.isAbsolute(id) && !id.split(path.sep).includes('node_modules'))
  .sort();
const inputs = [];
const bytes = [];
for (const id of ours) {
  const [s, content] = [await stat(id), await readFile(id)];
  if (content.length !== s.size) throw new Error(`${id} changed while it was bundled: build again`);
  inputs.push([path.relative(dist, id), s.size, s.mtimeMs]);
  bytes.push(content);
}
await writeFile(path.join(dist, `${ENTRY}.inputs`), Buffer.concat(bytes));
await writeFile(path.join(dist, `${ENTRY}.json`), `${JSON.stringify(inputs)}\n`);
process.stdout.write(`bundled the fast path from ${inputs.length} files into ${path.relative(process.cwd(), path.join(dist, `${ENTRY}.cjs`))}\n`);
