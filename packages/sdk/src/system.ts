/**
 * What a unit may see of the machine. Units observe through this interface only, so the
 * same unit works on `/` in production and on a sandbox root in tests, and the engine can
 * snapshot, roll back and audit everything it changes.
 */
export interface System {
  /** The root prefix every path lives under (`/` in production). */
  readonly root: string;
  /** Read a text file inside the root; null when it does not exist. */
  readFile(path: string): Promise<string | null>;
  /** The file's permission bits and modification time, or null when it does not exist. */
  stat(path: string): Promise<{ mode: number; mtimeMs: number } | null>;
  /** The kernel's hostname, or null when the daemon does not manage it. */
  kernelHostname(): Promise<string | null>;
  readonly postfix: PostfixView;
  readonly services: ServiceView;
}

/** Read-only access to the Postfix configuration under the root. */
export interface PostfixView {
  /** `<root>/etc/postfix`, as a path inside the root. */
  readonly configDir: string;
  /** The parameters main.cf sets explicitly, as `postconf -n` would show them (unexpanded). */
  mainCf(): Promise<Map<string, string>>;
  /** Whether Postfix knows a parameter name (from `postconf -d`), for validating user input. */
  isKnownParameter(name: string): Promise<boolean>;
  /** The map type Postfix uses when none is given (`default_database_type`), such as hash or lmdb. */
  defaultMapType(): Promise<string>;
  /** The database file postmap builds for a source map file (`.db` for hash, `.lmdb` for lmdb). */
  mapDatabase(path: string): Promise<string>;
  /** Whether Postfix is installed on this machine at all. */
  installed(): Promise<boolean>;
}

/** Service state, through systemd in production or direct control where systemd does not run. */
export interface ServiceView {
  running(service: string): Promise<boolean>;
  installed(service: string): Promise<boolean>;
  /** Check a service's configuration with its own tool (rspamadm configtest, spamassassin --lint); the problem, or null when it passes or there is no tool. */
  checkConfig(service: string): Promise<string | null>;
  /**
   * Where a service scoped runs listens, by name (`rspamd.milter`, `rspamd.normal`,
   * `rspamd.controller`, `redis`, `spamd`, `postfix.filter-return`, `postsrsd.forward`,
   * `postsrsd.reverse`, `postfix.submission`): Debian's defaults on `/`,
   * ports chosen once per sandbox root (so two sandboxes never collide) anywhere else.
   */
  endpoint(name: EndpointName): Promise<Endpoint>;
}

/** The listening addresses scoped knows the services by. */
export type EndpointName =
  | 'rspamd.milter'
  | 'rspamd.normal'
  | 'rspamd.controller'
  | 'redis'
  | 'spamd'
  | 'postfix.filter-return'
  | 'postsrsd.forward'
  | 'postsrsd.reverse'
  | 'postfix.submission';

/** A TCP address on this machine. */
export interface Endpoint {
  host: string;
  port: number;
}
