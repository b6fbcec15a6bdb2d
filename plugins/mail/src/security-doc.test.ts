/**
 * SECURITY.md tells admins which raw Postfix parameters are refused and why; this keeps that
 * table and the policy in dangerous-params.ts in step, so neither can change alone.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PARAM_VARS } from './configure-postfix.js';
import { DANGEROUS_CLASSES, REFUSED_MAP_TYPES, dangerousClass } from './dangerous-params.js';

const doc = readFileSync(new URL('../../../SECURITY.md', import.meta.url), 'utf8');
/** The rows of the "Raw Postfix parameters" table: class, parameters, reason. */
const rows = new Map(
  doc
    .split('\n')
    .filter((l) => /^\| [a-z]/.test(l) && l.split('|').length === 5)
    .map((l) => l.split('|').map((c) => c.trim()))
    .map(([, cls, params]) => [cls!, params!]),
);
/** The `names` a table cell lists; globs such as `*_command` stand for the patterns. */
const listed = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

describe('SECURITY.md and the dangerous-parameter policy', () => {
  it('has a row for every class, listing each of its parameters by name', () => {
    for (const cls of DANGEROUS_CLASSES) {
      const cell = rows.get(cls.name);
      expect(cell, `no row for ${cls.name}`).toBeDefined();
      for (const name of cls.names ?? []) expect(listed(cell!), `${cls.name}: ${name}`).toContain(name);
    }
  });

  it('names only parameters the policy refuses, in the class that refuses them', () => {
    for (const cls of DANGEROUS_CLASSES) {
      for (const word of listed(rows.get(cls.name)!)) {
        // A glob such as `*_command` or `authorized_*_users` stands for a pattern: try it with a sample name.
        const sample = word.replace(/\*/g, 'x');
        expect(dangerousClass(sample)?.name, `${cls.name}: ${word}`).toBe(cls.name);
      }
    }
  });

  it('lists every parameter a var owns, and every refused lookup table type', () => {
    expect(listed(rows.get('parameters a var owns')!).sort()).toEqual(Object.keys(PARAM_VARS).sort());
    for (const type of REFUSED_MAP_TYPES) expect(doc).toContain(`\`${type}:\``);
  });
});
