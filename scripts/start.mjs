#!/usr/bin/env node
// `npm start`: scoped on a sandbox root inside the repository, with the embedded SQLite
// store, so a newcomer can try every command without touching this machine's system.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.join(repo, 'sandbox');
const postfixDir = path.join(root, 'etc', 'postfix');
mkdirSync(postfixDir, { recursive: true });
// A fresh Postfix install has no main.cf; seed the sandbox with Debian's.
for (const [from, to] of [
  ['/usr/share/postfix/main.cf.debian', 'main.cf'],
  ['/etc/postfix/master.cf', 'master.cf'],
]) {
  if (!existsSync(path.join(postfixDir, to)) && existsSync(from)) copyFileSync(from, path.join(postfixDir, to));
}
const socket = path.join(root, 'run', 'scoped', 'scoped.sock');
const cpcmd = path.join(repo, 'node_modules', '.bin', 'cpcmd');
process.stdout.write(`scoped is starting on the sandbox root ${root} (store: ${path.join(root, 'var/lib/scoped/scoped.sqlite')}).

In another terminal:
  export SCOPED_SOCKET=${socket}
  ${cpcmd} scope:list
  ${cpcmd} scope:set net.hostname mail.example.com
  ${cpcmd} scope:get net.hostname
  cat ${path.join(root, 'etc', 'hostname')}

The Scope GUI, in a browser on this machine: http://127.0.0.1:8740/
  ${cpcmd} gui        (prints a one-time login address for it: paste it into the browser)

Over HTTP: curl -H "Authorization: Bearer $(cat ${path.join(root, 'etc/scoped/admin.token')})" -d '{"jsonrpc":"2.0","id":1,"method":"scope.list"}' http://127.0.0.1:8740/rpc
Stop with Ctrl-C.

`);
const child = spawn(process.execPath, [path.join(repo, 'packages', 'daemon', 'bin', 'scoped.js'), '--root', root, ...process.argv.slice(2)], {
  stdio: 'inherit',
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill('SIGTERM'));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
