/**
 * A hostile SMTP relay for --verify attacks: a raw TCP server on a free loopback port that
 * says what the test wants at each step, offers STARTTLS (a self-signed certificate, which
 * TLS level encrypt accepts, as Postfix does) and answers the login after TLS. Raw rather than
 * smtp-server, so that it can send what no well-behaved server would: escape sequences, 10 KB
 * lines, the credentials echoed back. close() stops it and ends every connection.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TLSSocket } from 'node:tls';
import { mustRun } from './proc.js';

export interface HostileScript {
  /** Close each connection at once, before any greeting. */
  hangUp?: boolean;
  /** The greeting, whole lines with CRLF; none at all when absent (a relay that says nothing). */
  greeting?: string;
  /** The answer to EHLO before STARTTLS (default: a name, STARTTLS). */
  ehlo?: string;
  /** The answer to EHLO after STARTTLS (default: a name, AUTH PLAIN LOGIN). */
  ehloTls?: string;
  /** The answer to AUTH, given the AUTH line as the relay received it. */
  auth?: (authLine: string) => string;
}

let pair: Promise<{ key: Buffer; cert: Buffer }> | undefined;

/** One self-signed key and certificate per test process. */
function keyPair(): Promise<{ key: Buffer; cert: Buffer }> {
  pair ??= (async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'scoped-hostile-'));
    try {
      const key = path.join(dir, 'key.pem');
      const cert = path.join(dir, 'cert.pem');
      await mustRun(
        '/usr/bin/openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=hostile.test', '-days', '1', '-keyout', key, '-out', cert],
        { timeoutMs: 30_000 },
      );
      return { key: await readFile(key), cert: await readFile(cert) };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  })();
  return pair;
}

export class HostileRelay {
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly server: Server) {}

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Its relayhost value: the address in brackets, no lookup. */
  get relayhost(): string {
    return `[127.0.0.1]:${this.port}`;
  }

  static async start(script: HostileScript): Promise<HostileRelay> {
    const { key, cert } = await keyPair();
    let relay!: HostileRelay;
    const server = createServer((plain) => {
      relay.sockets.add(plain);
      plain.on('close', () => relay.sockets.delete(plain));
      plain.on('error', () => undefined);
      if (script.hangUp) return void plain.destroy();
      if (script.greeting === undefined) return;
      plain.write(script.greeting);
      const onLine = (socket: Socket, line: string, tls: boolean) => {
        if (/^EHLO/i.test(line))
          socket.write(tls ? (script.ehloTls ?? '250-hostile.test\r\n250 AUTH PLAIN LOGIN\r\n') : (script.ehlo ?? '250-hostile.test\r\n250 STARTTLS\r\n'));
        else if (/^STARTTLS/i.test(line) && !tls) {
          plain.removeAllListeners('data');
          plain.write('220 2.0.0 go ahead\r\n', () => {
            const secure = new TLSSocket(plain, { isServer: true, key, cert });
            secure.on('error', () => undefined);
            secure.on('data', (chunk: Buffer) => {
              for (const l of chunk.toString('latin1').split('\r\n').filter(Boolean)) onLine(secure, l, true);
            });
          });
        } else if (/^AUTH/i.test(line) && script.auth) socket.write(script.auth(line.trim()));
        else if (/^QUIT/i.test(line)) socket.end('221 bye\r\n');
      };
      plain.on('data', (chunk: Buffer) => {
        for (const l of chunk.toString('latin1').split('\r\n').filter(Boolean)) onLine(plain, l, false);
      });
    });
    relay = new HostileRelay(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return relay;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
