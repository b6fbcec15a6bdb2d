/**
 * A Postfix lookup table of scoped's own (transport, sender transport, TLS policy): its source file under
 * /etc/postfix, the database postmap builds from it, and its place in a maps parameter such as
 * transport_maps. scoped's map is listed first and the operator's maps after it, as written, so
 * entries the operator wrote by hand stay in their own files, untouched, and still work for
 * every destination scoped has no entry for.
 */
import type { Change, System } from '@scoped/sdk';

/** What a unit observes of one of its maps. */
export interface OwnMap {
  path: string;
  text: string | null;
  mtime: number | null;
  dbPath: string;
  dbMtime: number | null;
  /** How main.cf names the map: `hash:$config_directory/NAME`. */
  ref: string;
}

export async function observeMap(system: System, path: string): Promise<OwnMap> {
  const [mapType, dbPath] = await Promise.all([system.postfix.defaultMapType(), system.postfix.mapDatabase(path)]);
  const [text, st, db] = await Promise.all([system.readFile(path), system.stat(path), system.stat(dbPath)]);
  const name = path.slice(path.lastIndexOf('/') + 1);
  return { path, text, mtime: st?.mtimeMs ?? null, dbPath, dbMtime: db?.mtimeMs ?? null, ref: `${mapType}:$config_directory/${name}` };
}

/** The changes that make the map hold `text` (null: no map at all), indexed by postmap. */
export function mapChanges(m: OwnMap, text: string | null, variable: string): Change[] {
  const changes: Change[] = [];
  if (text !== null) {
    if (m.text !== text) changes.push({ kind: 'file', path: m.path, content: text, mode: 0o644, current: m.text, var: variable });
    const stale = m.dbMtime === null || (m.mtime !== null && m.dbMtime < m.mtime);
    if (m.text !== text || stale)
      changes.push({ kind: 'postmap', path: m.path, reason: m.text !== text ? 'entries changed' : 'database missing or stale', var: variable });
  } else {
    if (m.text !== null) changes.push({ kind: 'file.remove', path: m.path, current: m.text, var: variable });
    if (m.dbMtime !== null) changes.push({ kind: 'file.remove', path: m.dbPath, current: '(database)', var: variable });
  }
  return changes;
}

/** A maps parameter's entries: split at commas and spaces, except inside `{ }` (inline tables). */
export function mapEntries(value: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let word = '';
  for (const ch of value) {
    if (ch === '{') depth++;
    if (ch === '}') depth = Math.max(0, depth - 1);
    if (depth === 0 && /[\s,]/.test(ch)) {
      if (word) out.push(word);
      word = '';
    } else word += ch;
  }
  if (word) out.push(word);
  return out;
}

/** Whether an entry of a maps parameter is scoped's map of this name (of any map type). */
const isOwn = (entry: string, name: string) =>
  /^[a-z0-9_]+:(\$config_directory|\$\{config_directory\}|\$\(config_directory\))\//.test(entry) && entry.endsWith(`/${name}`);

/**
 * A maps parameter with scoped's map first (`own`, or none when null) and the operator's maps
 * after it. Taking scoped's map away again leaves the operator's value exactly as it was written.
 */
export function mapsParam(current: string | null, own: string | null, name: string): string | null {
  let rest = current ?? '';
  const entries = mapEntries(rest);
  if (entries.some((e) => isOwn(e, name))) {
    const first = entries[0]!;
    const lead = rest.match(/^\s*/)![0].length;
    // scoped's own map leads, as scoped writes it: the operator's text after it is kept byte for byte.
    rest =
      isOwn(first, name) && rest.startsWith(first, lead)
        ? rest.slice(lead + first.length).replace(/^[\s,]+/, '')
        : entries.filter((e) => !isOwn(e, name)).join(', ');
  }
  rest = rest.trim() === '' ? '' : rest;
  if (own !== null) return rest ? `${own}, ${rest}` : own;
  return rest || null;
}
