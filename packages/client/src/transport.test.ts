import { mkdtempSync, rmSync } from 'node:fs';
import { type Server, type Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpTransport, TransportError, parseAnswer } from './transport.js';

const http = (head: string, body = '') => Buffer.concat([Buffer.from(`${head.split('\n').join('\r\n')}\r\n\r\n`, 'latin1'), Buffer.from(body, 'utf8')]);

describe('parseAnswer', () => {
  it('takes content-length bytes of body', () => {
    expect(parseAnswer(http('HTTP/1.1 200 OK\ncontent-type: application/json\ncontent-length: 2', '{}'))).toEqual({ status: 200, body: '{}' });
    expect(parseAnswer(http('HTTP/1.1 200 OK\nContent-Length: 10', '{"a":"é"}'))).toEqual({ status: 200, body: '{"a":"é"}' });
  });

  it('joins a chunked body', () => {
    expect(parseAnswer(http('HTTP/1.1 200 OK\ntransfer-encoding: chunked', '3\r\n{"a\r\nB;ext=1\r\n":12345678}\r\n0\r\n\r\n'))).toEqual({
      status: 200,
      body: '{"a":12345678}',
    });
  });

  it('reads to the end when no length is given (only once the connection has closed), and a 204 without a body', () => {
    expect(parseAnswer(http('HTTP/1.0 503 Service Unavailable', 'busy'))).toEqual({ status: 503, body: 'busy' });
    expect(parseAnswer(http('HTTP/1.0 503 Service Unavailable', 'busy'), false)).toBeUndefined();
    expect(parseAnswer(http('HTTP/1.1 200 OK\ncontent-length: 2', '{}'), false)).toEqual({ status: 200, body: '{}' });
    expect(parseAnswer(http('HTTP/1.1 204 No Content'))).toEqual({ status: 204, body: '' });
  });

  it('is undefined for an answer cut short or one that is not HTTP', () => {
    expect(parseAnswer(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n'))).toBeUndefined();
    expect(parseAnswer(http('HTTP/1.1 200 OK\ncontent-length: 10', '{}'))).toBeUndefined();
    expect(parseAnswer(http('HTTP/1.1 200 OK\ntransfer-encoding: chunked', '5\r\n{"a":'))).toBeUndefined();
    expect(parseAnswer(http('HTTP/1.1 200 OK\ntransfer-encoding: chunked', 'zz\r\n{}\r\n0\r\n\r\n'))).toBeUndefined();
    expect(parseAnswer(http('SSH-2.0-OpenSSH', '{}'))).toBeUndefined();
    expect(parseAnswer(http('HTTP/1.1 200 OK\ncontent-length: -1', '{}'))).toBeUndefined();
  });
});

describe('HttpTransport on a unix socket (a real socket and a server that answers as told)', () => {
  let dir: string;
  let server: Server;
  let socketPath: string;
  /** What the server answers next, given the request it read; undefined: hang up without answering. */
  let answer: (request: string) => string | undefined;
  let lastRequest = '';

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'scoped-client-test-'));
    socketPath = path.join(dir, 'scoped.sock');
    server = createServer((socket: Socket) => {
      let text = '';
      socket.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? 0);
        if (Buffer.byteLength(text.slice(end + 4)) < length) return;
        lastRequest = text;
        const reply = answer(text);
        if (reply === undefined) socket.destroy();
        else socket.end(reply);
      });
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  const payload = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'scope.get', params: { name: 'net.hostname' } });

  it('sends one POST /rpc with its length and connection: close, and returns the body', async () => {
    answer = () => 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 38\r\n\r\n{"jsonrpc":"2.0","id":1,"result":"ok"}';
    await expect(new HttpTransport({ socket: socketPath }).send(payload)).resolves.toBe('{"jsonrpc":"2.0","id":1,"result":"ok"}');
    const [head, body] = lastRequest.split('\r\n\r\n');
    expect(head!.split('\r\n')[0]).toBe('POST /rpc HTTP/1.1');
    expect(head).toMatch(/\r\ncontent-type: application\/json\r\n/);
    expect(head).toMatch(new RegExp(`\\r\\ncontent-length: ${Buffer.byteLength(payload)}\\r\\n`));
    expect(head).toMatch(/\r\nconnection: close(\r\n|$)/);
    expect(body).toBe(payload);
  });

  it('a chunked answer, a 204 and a refusal with a JSON-RPC body', async () => {
    const t = new HttpTransport({ socket: socketPath });
    answer = () => 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n';
    await expect(t.send(payload)).resolves.toBe('{"a":1}');
    answer = () => 'HTTP/1.1 204 No Content\r\n\r\n';
    await expect(t.send(payload)).resolves.toBeNull();
    answer = () => 'HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\nno';
    const refused = await t.send(payload).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TransportError);
    expect(refused).toMatchObject({ status: 503, body: 'no', message: 'the daemon answered HTTP 503' });
  });

  it('an answer complete by its length is taken without waiting for the daemon to close', async () => {
    const held: Socket[] = [];
    const keepOpen = createServer((socket) => {
      held.push(socket);
      socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n{}'));
    });
    const kept = path.join(dir, 'kept.sock');
    await new Promise<void>((resolve) => keepOpen.listen(kept, resolve));
    try {
      await expect(new HttpTransport({ socket: kept }).send(payload)).resolves.toBe('{}');
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => keepOpen.close(() => resolve()));
    }
  });

  it('a daemon that hangs up, or answers only part, is reported as closing before it answered', async () => {
    const t = new HttpTransport({ socket: socketPath });
    answer = () => undefined;
    await expect(t.send(payload)).rejects.toThrow(/closed the connection before answering/);
    answer = () => 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"jsonrpc"';
    await expect(t.send(payload)).rejects.toThrow(/closed the connection before answering/);
  });

  it('no daemon at the path: says so and what to do', async () => {
    await expect(new HttpTransport({ socket: path.join(dir, 'missing.sock') }).send(payload)).rejects.toThrow(
      /cannot reach scoped at the socket .*missing\.sock: is it running\?/,
    );
  });
});
