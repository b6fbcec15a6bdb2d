#!/usr/bin/env node
// Writes scopes.json next to oclif.manifest.json: the scope names of the first-party plugins,
// which shell completion offers when no daemon answers. Run by the build after `oclif manifest`.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** The plugins scoped loads by default. */
const FIRST_PARTY = ['@scoped/plugin-net', '@scoped/plugin-mail', '@scoped/plugin-cp'];

export const SCOPES_FILE = fileURLToPath(new URL('../scopes.json', import.meta.url));

/** The file's text: the sorted scope names as a JSON list. */
export async function scopesJson() {
  const names = [];
  for (const name of FIRST_PARTY) {
    const plugin = (await import(name)).default;
    names.push(...plugin.scopes.map((s) => s.name));
  }
  return `${JSON.stringify([...new Set(names)].sort(), null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await writeFile(SCOPES_FILE, await scopesJson());
  process.stdout.write(`wrote scope names to ${SCOPES_FILE}\n`);
}
