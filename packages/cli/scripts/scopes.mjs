#!/usr/bin/env node
// Writes scopes.json next to oclif.manifest.json: the scopes of the first-party plugins (name,
// summary, usage and examples), which shell completion offers when no daemon answers and
// `cpcmd scope:set NAME --help` shows. Run by the build after `oclif manifest`.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/** The plugins scoped loads by default. */
const FIRST_PARTY = ['@scoped/plugin-net', '@scoped/plugin-mail', '@scoped/plugin-cp'];

export const SCOPES_FILE = fileURLToPath(new URL('../scopes.json', import.meta.url));

/** The file's text: each scope's name, summary, usage and examples, sorted by name, as a JSON list. */
export async function scopesJson() {
  const scopes = new Map();
  for (const name of FIRST_PARTY) {
    const plugin = (await import(name)).default;
    for (const s of plugin.scopes) scopes.set(s.name, { name: s.name, summary: s.summary, usage: s.usage, examples: [...s.examples] });
  }
  return `${JSON.stringify(
    [...scopes.keys()].sort().map((n) => scopes.get(n)),
    null,
    2,
  )}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await writeFile(SCOPES_FILE, await scopesJson());
  process.stdout.write(`wrote scope names to ${SCOPES_FILE}\n`);
}
