import { API_VERSION, type PluginDef, type ScopeDef, type UnitDef, type VarDef } from '@scoped/sdk';

/** How a plugin fared at load. */
export interface PluginStatus {
  name: string;
  version: string;
  scopes: string[];
  status: 'loaded' | 'failed';
  error?: string;
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
  add(plugin: PluginDef): PluginStatus {
    const status: PluginStatus = { name: plugin.name, version: plugin.version, scopes: (plugin.scopes ?? []).map((s) => s.name), status: 'loaded' };
    const problem = this.problem(plugin);
    if (problem) {
      status.status = 'failed';
      status.error = problem;
    } else {
      for (const v of plugin.vars ?? []) this.vars.set(v.name, v);
      for (const u of plugin.units ?? []) this.units.set(u.name, u);
      for (const s of plugin.scopes ?? []) this.scopes.set(s.name, s);
    }
    this.plugins.push(status);
    return status;
  }

  private problem(plugin: PluginDef): string | undefined {
    if (plugin.apiVersion !== API_VERSION) return `plugin API version ${plugin.apiVersion} is not supported (this daemon speaks ${API_VERSION})`;
    const taken = (kind: string, map: Map<string, unknown>, names: string[]) => {
      const seen = new Set<string>();
      for (const n of names) {
        if (map.has(n) || seen.has(n)) return `${kind} ${n} is declared twice`;
        seen.add(n);
      }
      return undefined;
    };
    const declared = new Set([...this.vars.keys(), ...(plugin.vars ?? []).map((v) => v.name)]);
    for (const u of plugin.units ?? []) {
      const missing = u.reads.find((r) => !declared.has(r));
      if (missing) return `unit ${u.name} reads var ${missing}, which no plugin declares`;
    }
    return (
      taken('var', this.vars, (plugin.vars ?? []).map((v) => v.name)) ??
      taken('unit', this.units, (plugin.units ?? []).map((u) => u.name)) ??
      taken('scope', this.scopes, (plugin.scopes ?? []).map((s) => s.name))
    );
  }

  /** The units that read any of these vars, in registration order. */
  unitsReading(vars: Iterable<string>): UnitDef[] {
    const set = new Set(vars);
    return [...this.units.values()].filter((u) => u.reads.some((r) => set.has(r)));
  }
}
