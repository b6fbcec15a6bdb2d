/**
 * The scoped process itself: start-up, its socket, SIGTERM, a second daemon on a live
 * socket, a stale socket left by kill -9, and refused configurations.
 */
import { existsSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { request as httpRequest, Agent } from 'node:http';
import { connect } from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectExit } from './helpers/expect.js';
import { SCOPED_BIN, WsClient, httpPost, run, scoped, tempDir } from './helpers/scoped.js';

/** The scoped binary run to its end (for the runs that must refuse to start). */
const scopedBin = (args: string[]) => run(process.execPath, [SCOPED_BIN, ...args], { timeoutMs: 20_000 });

describe('scoped start-up and shutdown', () => {
  it('makes its socket 0660 and answers on it without a token', async () => {
    await using d = await scoped();
    expect(d.socket).toBe(path.join(d.root, 'run/scoped/scoped.sock'));
    const st = await stat(d.socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    const r = await httpPost({ socket: d.socket }, '{"jsonrpc":"2.0","id":1,"method":"daemon.status","params":{}}');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text)).toMatchObject({ id: 1, result: { pid: d.pid, root: d.root } });
  });

  it('exits 0 on SIGTERM, closing WebSocket clients with 1001 and idle HTTP connections, and removes its socket', async () => {
    await using d = await scoped();
    {
      const token = d.token();
      const ws = await WsClient.open(d.port!, token);
      // an idle keep-alive HTTP connection must not hold the shutdown either
      const agent = new Agent({ keepAlive: true });
      await new Promise<void>((resolve, reject) => {
        const body = '{"jsonrpc":"2.0","id":1,"method":"scope.list","params":{}}';
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port: d.port!,
            path: '/rpc',
            method: 'POST',
            agent,
            headers: { authorization: `Bearer ${token}`, 'content-length': body.length },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve());
          },
        );
        req.on('error', reject);
        req.end(body);
      });
      const started = Date.now();
      const exit = await d.signal('SIGTERM', 10_000);
      agent.destroy();
      expect(exit).toMatchObject({ code: 0, timedOut: false });
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(await ws.closed).toMatchObject({ code: 1001 });
      expect(existsSync(d.socket)).toBe(false);
      expect(d.stderr()).toMatch(/"msg":"stopped"/);
      // the TCP port is closed too
      await expect(httpPost({ port: d.port! }, '{}', { token })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    }
  });

  it('exits on SIGTERM within 5 s even when a WebSocket client does not answer the closing handshake', async () => {
    await using d = await scoped();
    const raw = connect(d.port!, '127.0.0.1');
    try {
      await new Promise<void>((resolve, reject) => {
        raw.once('connect', resolve);
        raw.once('error', reject);
      });
      // A client that upgrades and then stops reading and answering (a hung or suspended process).
      raw.write(
        'GET /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${d.token()}\r\n\r\n`,
      );
      const head = await new Promise<string>((resolve) => raw.once('data', (c: Buffer) => resolve(c.toString('latin1'))));
      expect(head).toMatch(/^HTTP\/1\.1 101 /);
      raw.pause();
      const started = Date.now();
      const exit = await d.signal('SIGTERM', 8_000);
      expect(exit.timedOut, `still running ${Date.now() - started} ms after SIGTERM`).toBe(false);
      expect(exit.code).toBe(0);
      expect(existsSync(d.socket)).toBe(false);
    } finally {
      raw.destroy();
    }
  });

  it('refuses to start a second daemon on a live socket, with a clear message, and the first keeps serving', async () => {
    await using first = await scoped({ listen: 'none' });
    {
      const second = await scopedBin(['--root', first.root, '--listen', 'none']);
      expect(second.code).not.toBe(0);
      expect(second.code).not.toBeNull();
      expect(second.stderr).toContain(first.socket);
      expect(second.stderr).toMatch(/already listening/);
      expect(second.stderr).not.toMatch(/^\s+at /m);
      // the first still owns its socket and answers
      expect(existsSync(first.socket)).toBe(true);
      expect(first.running).toBe(true);
      expect(await first.cpcmd(['scope:set', 'net.hostname', 'first.example.com'])).toMatchObject({ code: 0 });
      expect(await first.cpcmd(['scope:get', 'net.hostname'])).toMatchObject({ code: 0, stdout: 'first.example.com\n' });
    }
  });

  it('replaces a stale socket left by kill -9 and keeps the stored state', async () => {
    await using a = await scoped({ listen: 'none' });
    expectExit(await a.cpcmd(['scope:set', 'net.hostname', 'persist.example.com']), 'ok');
    const killed = await a.signal('SIGKILL');
    expect(killed.signal).toBe('SIGKILL');
    expect(existsSync(a.socket)).toBe(true); // the stale socket file is left behind
    const socket = a.socket;
    expectExit(await a.cpcmd(['scope:get', 'net.hostname']), 'unreachable');

    await a.start();
    expect(a.socket).toBe(socket);
    expect(await a.cpcmd(['scope:get', 'net.hostname'])).toMatchObject({ code: 0, stdout: 'persist.example.com\n' });
    expect(await a.cpcmd(['scope:get', 'cp.bootstrapper', 'system_hostname'])).toMatchObject({ code: 0, stdout: 'persist.example.com\n' });
    expect(await a.cpcmd(['scope:set', 'net.hostname', 'persist.example.com'])).toMatchObject({ code: 0, stdout: expect.stringContaining('unchanged') });
    await a.stop();
    expect(existsSync(socket)).toBe(false);
  });

  it('refuses a non-loopback --listen and an unknown config key with exit 2 and one line', async () => {
    await using dir = await tempDir();
    const root = dir.path;
    const wide = await scopedBin(['--root', root, '--listen', '0.0.0.0:8740']);
    expect(wide.code).toBe(2);
    expect(wide.stderr).toMatch(/^scoped: [^\n]*loopback[^\n]*\n$/);
    await writeFile(path.join(root, 'bad.yaml'), 'maxBodyByte: 10\n');
    const bad = await scopedBin(['--root', root, '--config', path.join(root, 'bad.yaml')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^scoped: [^\n]*maxBodyByte[^\n]*\n$/);
    expect(existsSync(path.join(root, 'run/scoped/scoped.sock'))).toBe(false);
  });
});
