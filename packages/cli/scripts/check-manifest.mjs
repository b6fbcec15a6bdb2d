#!/usr/bin/env node
// Fails (exit 1) when oclif.manifest.json or scopes.json is missing or no longer what the build
// would write from the compiled commands (dist) and the first-party plugins. `npm run build -w
// @scoped/cli` writes both. CI runs this (npm run check:manifest -w @scoped/cli).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Plugin } from '@oclif/core';
import { SCOPES_FILE, scopesJson } from './scopes.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (file) => readFile(file, 'utf8').catch(() => undefined);

// The same generation as `oclif manifest`, in memory.
const plugin = new Plugin({ root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true, respectNoCacheDefault: true });
await plugin.load();
const wanted = [
  [path.join(root, 'oclif.manifest.json'), JSON.stringify(plugin.manifest, null, 2)],
  [SCOPES_FILE, await scopesJson()],
];
let stale = 0;
for (const [file, text] of wanted) {
  const found = await read(file);
  const rel = path.relative(process.cwd(), file) || file;
  if (found === undefined) process.stderr.write(`${rel} is missing\n`);
  else if (found !== text) process.stderr.write(`${rel} is stale: it does not match the commands declared in src/specs.ts (as built in dist)\n`);
  else continue;
  stale++;
}
if (stale) {
  process.stderr.write('run npm run build -w @scoped/cli to write it again\n');
  process.exit(1);
}
process.stdout.write('oclif.manifest.json and scopes.json are current\n');
