/**
 * A real SMTP relay for the smart-host tests: smtp-server on a free loopback port that
 * requires STARTTLS before AUTH (allowInsecureAuth stays off, so an accepted login proves
 * TLS), accepts only alice / s3cret, and records every login attempt and every message.
 * With `{ auth: false }` it is a plain sink instead: no AUTH offered or required (STARTTLS
 * still offered), for transports that deliver without logging in. Each message records the
 * address the client connected from and the name it gave in EHLO.
 */
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerSession } from 'smtp-server';
import { freePort, makeTempDir, mustRun } from './proc.js';

export const RELAY_USER = 'alice';
export const RELAY_PASSWORD = 's3cret';

export interface AuthAttempt {
  username: string;
  password: string;
  method: string;
  secure: boolean;
  accepted: boolean;
}

export interface ReceivedMessage {
  from: string;
  to: string[];
  raw: string;
  secure: boolean;
  user: unknown;
  /** The address the client connected from. */
  remoteAddress: string;
  /** The name the client gave in EHLO/HELO. */
  helo: string;
}

export class RelaySink {
  readonly auths: AuthAttempt[] = [];
  readonly messages: ReceivedMessage[] = [];

  private constructor(
    private readonly server: SMTPServer,
    private readonly dir: string,
    readonly port: number,
  ) {}

  /** The relayhost value that points at this sink, without MX lookup. */
  get relayhost(): string {
    return `[127.0.0.1]:${this.port}`;
  }

  /** The same as one cpcmd argv element: single quotes inside, so the grammar keeps it a string. */
  get relayhostWord(): string {
    return `'${this.relayhost}'`;
  }

  static async start(opts: { auth?: boolean } = {}): Promise<RelaySink> {
    const requireAuth = opts.auth ?? true;
    const dir = await makeTempDir('scoped-relay-');
    try {
      const key = path.join(dir, 'key.pem');
      const cert = path.join(dir, 'cert.pem');
      await mustRun(
        '/usr/bin/openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=relay.test', '-days', '1', '-keyout', key, '-out', cert],
        { timeoutMs: 30_000 },
      );
      const port = await freePort();
      let sink!: RelaySink;
      const server = new SMTPServer({
        secure: false,
        key: await readFile(key),
        cert: await readFile(cert),
        name: 'relay.test',
        authMethods: ['PLAIN', 'LOGIN'],
        ...(requireAuth ? {} : { authOptional: true, disabledCommands: ['AUTH'] }),
        logger: false,
        disableReverseLookup: true,
        onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, callback) {
          const accepted = auth.username === RELAY_USER && auth.password === RELAY_PASSWORD;
          sink.auths.push({ username: auth.username ?? '', password: auth.password ?? '', method: auth.method, secure: Boolean(session.secure), accepted });
          if (!accepted) return callback(new Error('Invalid username or password'));
          callback(null, { user: auth.username });
        },
        onData(stream, session, callback) {
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('end', () => {
            sink.messages.push({
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              to: session.envelope.rcptTo.map((r) => r.address),
              raw: Buffer.concat(chunks).toString('utf8'),
              secure: Boolean(session.secure),
              user: session.user,
              remoteAddress: session.remoteAddress,
              helo: session.hostNameAppearsAs,
            });
            callback();
          });
        },
      });
      sink = new RelaySink(server, dir, port);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => (server.off('error', reject), resolve()));
      });
      // A client that drops the connection is not the sink's failure.
      server.on('error', () => undefined);
      return sink;
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
