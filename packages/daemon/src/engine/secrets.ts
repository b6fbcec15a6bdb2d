import { describeChange, redactValue, type Change, type ScopeContext, type ScopeDef } from '@scoped/sdk';
import { type Logger, stackFrames, thrownSummary } from '../log.js';
import type { Registry } from '../registry.js';

/**
 * Which vars, scopes, units and changes carry secrets, and what may be said of them: a secret
 * never enters a plan, a message, the log, an event or the audit trail.
 */
export class Secrets {
  constructor(
    private readonly registry: Registry,
    private readonly log: Logger,
  ) {}

  /**
   * Whether a change carries secret content: its unit marked it (the credentials map and its
   * postmap), or it serves a var that is secret as a whole. Such a change is described without
   * its content, and the output of the tool that carries it out is never passed on.
   */
  secretChange(c: Change): boolean {
    return c.secret === true || (c.var !== undefined && this.registry.vars.get(c.var)?.secret === true);
  }

  /** The change, marked secret when it is one, for describing it. */
  marked(c: Change): Change {
    return this.secretChange(c) && !c.secret ? { ...c, secret: true } : c;
  }

  /** A change as users read it (plans, job steps, verification): secret content never enters the text. */
  describe(c: Change): string {
    return describeChange(this.marked(c));
  }

  /** Whether a scope's or a unit's own code sees a secret, so what it throws may carry one. */
  private handlesSecret(kind: 'unit' | 'scope', name: string): boolean {
    const secret = (v: string) => this.registry.vars.get(v)?.secret !== undefined;
    if (kind === 'unit') return this.registry.units.get(name)?.reads.some(secret) ?? false;
    const scope = this.registry.scopes.get(name);
    return scope !== undefined && (Boolean(scope.secretFields?.length) || scope.redact !== undefined || scope.vars.some(secret));
  }

  /**
   * What plugin code threw, as a caller may read it. Code that sees a secret may have put it in
   * its message, so from such code only the error's kind goes out (and its stack to the log).
   */
  thrownBy(kind: 'unit' | 'scope', name: string, err: unknown): string {
    if (!this.handlesSecret(kind, name)) return err instanceof Error ? err.message : String(err);
    this.log.error(`${kind} failed; its message is withheld because it handles a secret`, { [kind]: name, error: thrownSummary(err), at: stackFrames(err) });
    return `${thrownSummary(err)} (the message is withheld: this ${kind} handles a secret; the daemon log has where it was thrown)`;
  }

  /**
   * The vars among a caller's values that carry a non-empty secret part (VarDef.secret): a
   * password given again must be planned and applied as a new one (PlanContext.rewrite).
   */
  secretsGiven(values: Record<string, unknown>): Set<string> {
    const filled = (v: unknown) => v !== undefined && v !== null && v !== '' && v !== false;
    const given = new Set<string>();
    for (const [name, value] of Object.entries(values)) {
      const secret = this.registry.vars.get(name)?.secret;
      if (secret === undefined) continue;
      if (secret === true ? filled(value) : value !== null && typeof value === 'object' && secret.some((k) => filled((value as Record<string, unknown>)[k])))
        given.add(name);
    }
    return given;
  }
}

/** A scope's value shown safely: through the scope's own redact, or with its secret fields replaced. */
export function redactScopeValue(scope: ScopeDef, value: unknown, ctx: ScopeContext): unknown {
  return scope.redact ? scope.redact(value, ctx) : redactValue(value, scope.secretFields);
}
