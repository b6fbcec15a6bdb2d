#!/usr/bin/env node
// `npm run pack [-- DIR]`: builds, then packs the packages a project outside this repository
// installs (the client for automation, the sdk for plugins, and the protocol both need) as npm
// tarballs into DIR (default ./packs), named without their version so that instructions and
// scripts need not change with it: npm install DIR/scoped-protocol.tgz DIR/scoped-client.tgz
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
/** Each package and the tarball it becomes; a package's @scoped dependencies come before it. */
const PACKED = [
  { dir: 'packages/protocol', file: 'scoped-protocol.tgz' },
  { dir: 'packages/sdk', file: 'scoped-sdk.tgz' },
  { dir: 'packages/client', file: 'scoped-client.tgz' },
];

const out = path.resolve(process.argv[2] ?? path.join(repo, 'packs'));
mkdirSync(out, { recursive: true });
execFileSync(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '-b'], { cwd: repo, stdio: 'inherit' });
const args = ['pack', '--json', '--pack-destination', out, ...PACKED.flatMap((p) => ['--workspace', p.dir])];
const packed = JSON.parse(execFileSync('npm', args, { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
for (const p of PACKED) {
  const { name } = await import(path.join(repo, p.dir, 'package.json'), { with: { type: 'json' } }).then((m) => m.default);
  const made = packed.find((x) => x.name === name);
  if (!made) throw new Error(`npm pack made no tarball for ${name}`);
  renameSync(path.join(out, made.filename), path.join(out, p.file));
  process.stdout.write(`${path.join(out, p.file)}\n`);
}
