import { API_VERSION, type PluginDef, type ScopeDef, type UnitDef, type VarDef } from '@scoped/sdk';

/** How a plugin fared at load, and since: a plugin whose unit hangs is disabled. */
export interface PluginStatus {
  name: string;
  version: string;
  scopes: string[];
  status: 'loaded' | 'failed' | 'disabled';
  error?: string;
  /** The directory it was loaded from. */
  source?: string;
}

/** Every var, unit and scope the loaded plugins declare, checked for collisions. */
export class Registry {
  readonly vars = new Map<string, VarDef>();
  readonly units = new Map<string, UnitDef>();
  readonly scopes = new Map<string, ScopeDef>();
  readonly plugins: PluginStatus[] = [];

  /**
   * Add a plugin whole or not at all: a plugin with a wrong API version, a name that another
   * plugin already took, or a unit that reads an undeclared var is recorded as failed and
   * adds nothing.
   */
  /** How many plugins were taken out of service (the common answer to disabled() is a quick no). */
  private disabledCount = 0;
  /** Changes when a plugin is taken out of service. */
  get outages(): number {
    return this.disabledCount;
  }
  /** Which plugin declared each var, unit and scope. */
  private readonly owner = new Map<string, PluginStatus>();
  /** What each loaded plugin declared it depends on, by plugin name. */
  private readonly deps = new Map<string, readonly string[]>();
  /** The definitions of the loaded plugins, by name. */
  private readonly defs = new Map<string, PluginDef>();

  add(plugin: PluginDef, source?: string): PluginStatus {
    const status: PluginStatus = { name: plugin.name, version: plugin.version, scopes: (plugin.scopes ?? []).map((s) => s.name), status: 'loaded' };
    if (source) status.source = source;
    const problem = this.problem(plugin);
    if (problem) {
      status.status = 'failed';
      status.error = problem;
    } else {
      for (const v of plugin.vars ?? []) {
        this.vars.set(v.name, v);
        this.owner.set(`var:${v.name}`, status);
      }
      for (const u of plugin.units ?? []) {
        this.units.set(u.name, u);
        this.owner.set(`unit:${u.name}`, status);
      }
      for (const s of plugin.scopes ?? []) {
        this.scopes.set(s.name, s);
        this.owner.set(`scope:${s.name}`, status);
      }
      this.deps.set(plugin.name, plugin.dependsOn ?? []);
      this.defs.set(plugin.name, plugin);
    }
    this.plugins.push(status);
    return status;
  }

  /** A loaded plugin's definition, by its name. */
  definition(name: string): PluginDef | undefined {
    return this.defs.get(name);
  }

  /** A plugin read whole but refused before registering anything (its dependencies cannot load). */
  refuse(plugin: PluginDef, error: string, source?: string): PluginStatus {
    const status: PluginStatus = { name: plugin.name, version: plugin.version, scopes: (plugin.scopes ?? []).map((s) => s.name), status: 'failed', error };
    if (source) status.source = source;
    this.plugins.push(status);
    return status;
  }

  /** A plugin that could not even be read. */
  recordFailure(name: string, error: string, source: string): void {
    this.plugins.push({ name, version: '', scopes: [], status: 'failed', error, source });
  }

  /** Why a unit or scope is out of service (its plugin misbehaved), or undefined. */
  disabled(kind: 'unit' | 'scope', name: string): string | undefined {
    if (this.disabledCount === 0) return undefined;
    const s = this.owner.get(`${kind}:${name}`);
    return s?.status === 'disabled' ? `plugin ${s.name} is disabled: ${s.error}` : undefined;
  }

  /** Take the plugin of a misbehaving unit or scope out of service; the rest keeps working. */
  disablePluginOf(kind: 'unit' | 'scope', name: string, reason: string): void {
    const s = this.owner.get(`${kind}:${name}`);
    if (!s || s.status === 'disabled') return;
    s.status = 'disabled';
    s.error = reason;
    this.disabledCount++;
  }

  private problem(plugin: PluginDef): string | undefined {
    if (plugin.apiVersion !== API_VERSION) return `plugin API version ${plugin.apiVersion} is not supported (this daemon speaks ${API_VERSION})`;
    const taken = (kind: string, map: Map<string, unknown>, names: string[]) => {
      const seen = new Set<string>();
      for (const n of names) {
        if (seen.has(n)) return `${kind} ${n} is declared twice in this plugin`;
        if (map.has(n)) return `${kind} ${n} is already declared by ${this.owner.get(`${kind}:${n}`)?.name ?? 'another plugin'}`;
        seen.add(n);
      }
      return undefined;
    };
    for (const dep of plugin.dependsOn ?? []) {
      if (dep === plugin.name) return 'it lists itself in dependsOn';
      if (this.deps.has(dep)) continue;
      if (this.plugins.some((p) => p.name === dep)) return `it depends on ${dep}, which did not load (see its own entry)`;
      return `it depends on ${dep}, which is not loaded: load ${dep} too (--plugin DIR|PACKAGE), or remove it from dependsOn`;
    }
    const varProblem = (what: string, verb: string, name: string) => {
      const own = (plugin.vars ?? []).some((v) => v.name === name);
      if (own) return undefined;
      const declarer = this.owner.get(`var:${name}`)?.name;
      if (declarer === undefined) return `${what} ${verb} var ${name}, which no plugin declares`;
      if (!this.reachable(plugin.dependsOn ?? []).has(declarer))
        return `${what} ${verb} var ${name} of ${declarer}, which it does not depend on: add '${declarer}' to the plugin's dependsOn`;
      return undefined;
    };
    for (const u of plugin.units ?? []) {
      for (const r of u.reads) {
        const problem = varProblem(`unit ${u.name}`, 'reads', r);
        if (problem) return problem;
      }
    }
    for (const sc of plugin.scopes ?? []) {
      for (const v of sc.vars) {
        const problem = varProblem(`scope ${sc.name}`, 'writes', v);
        if (problem) return problem;
      }
    }
    return (
      taken(
        'var',
        this.vars,
        (plugin.vars ?? []).map((v) => v.name),
      ) ??
      taken(
        'unit',
        this.units,
        (plugin.units ?? []).map((u) => u.name),
      ) ??
      taken(
        'scope',
        this.scopes,
        (plugin.scopes ?? []).map((s) => s.name),
      )
    );
  }

  /** The loaded plugins these ones depend on, directly or through others, themselves included. */
  private reachable(names: readonly string[]): Set<string> {
    const seen = new Set<string>();
    const visit = (n: string) => {
      if (seen.has(n)) return;
      seen.add(n);
      for (const d of this.deps.get(n) ?? []) visit(d);
    };
    for (const n of names) visit(n);
    return seen;
  }

  /** The units that read any of these vars, in registration order. */
  unitsReading(vars: Iterable<string>): UnitDef[] {
    const set = new Set(vars);
    return [...this.units.values()].filter((u) => u.reads.some((r) => set.has(r)) && !this.disabled('unit', u.name));
  }
}
