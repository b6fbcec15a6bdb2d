import { ErrorCodes, RpcError, type MethodDescriptor } from '@scoped/protocol';
import { JSONRPCServer, type JSONRPCResponse } from 'json-rpc-2.0';
import type { z } from 'zod';
import { invalid, toRpcError } from './engine.js';
import type { Logger } from './log.js';
import { checkNames } from './names.js';
import type { Principal } from './tokens.js';

/** A connection that can carry notifications back (WebSocket). */
export interface Connection {
  /** Send a notification; a peer that leaves too much unread is closed instead (4008), to resume with `since`. */
  notify(method: string, params: unknown): void;
  /**
   * Whether the peer has read enough for more to be sent now: true, or a promise that settles
   * when it has (true) or the connection closed (false). A replay waits on it.
   */
  ready(): true | Promise<boolean>;
  /** False once the connection is closing or closed: a replay still waiting for its turn is dropped. */
  isOpen(): boolean;
  /** Run `fn` when the connection closes (at once if it already has), to drop its subscriptions. */
  onClose(fn: () => void): void;
  /** The event subscriptions made on this connection. */
  readonly subscriptions: Set<string>;
  /** How many subscriptions it may carry (maxSubscriptionsPerConnection). */
  readonly maxSubscriptions: number;
}

/** Who is calling and how; handed to every handler. */
export interface CallContext {
  principal: Principal;
  transport: 'unix' | 'http' | 'ws';
  peer?: string;
  connection?: Connection;
}

export interface RpcLimits {
  /** Most requests in one batch. */
  maxBatch: number;
  /** Most bytes one answer (a whole batch's) may take; beyond, the calls that do not fit answer too-large. */
  maxResponseBytes: number;
  /** Most bytes of answers the daemon holds at once, built or waiting to be written; beyond, calls answer busy. */
  maxAnswerBytesInFlight: number;
}

/** An answer to send, and what to call once it has been written (or dropped): it gives its bytes back. */
export interface Answer {
  text: string;
  release(): void;
}

/**
 * The bytes of answers held at once, daemon-wide. maxResponseBytes bounds one answer, but not
 * how many are being built or wait to be written at the same time (many connections, or one
 * WebSocket's requests in flight); each part of an answer takes its bytes from here until the
 * transport has written the answer. Admins' answers always get their bytes (they still count),
 * so a flood of readers cannot keep an admin from being answered.
 */
/**
 * Answers this small always get their bytes: the budget is for large reads, and a change's
 * answer (a plan) must never be replaced by busy after the change was made.
 */
const SMALL_ANSWER_BYTES = 64 * 1024;

export class AnswerBudget {
  private held = 0;

  constructor(readonly max: number) {}

  /** Take `bytes`, unless that would pass the limit (an admin's take always succeeds). */
  take(bytes: number, force: boolean): boolean {
    if (!force && this.held + bytes > this.max) return false;
    this.held += bytes;
    return true;
  }

  give(bytes: number): void {
    this.held -= bytes;
  }

  /** Bytes held now. */
  get inUse(): number {
    return this.held;
  }
}

type Handler<P extends z.ZodType, R extends z.ZodType> = (params: z.output<P>, ctx: CallContext) => Promise<z.input<R>> | z.input<R>;

const errorResponse = (id: unknown, code: number, message: string, data?: unknown): JSONRPCResponse =>
  ({ jsonrpc: '2.0', id: validId(id) ? id : null, error: data === undefined ? { code, message } : { code, message, data } }) as JSONRPCResponse;

/** The answer to a call of a batch that was not run because the batch's answer was already full; none for a notification. */
function notRun(request: unknown, max: number): JSONRPCResponse | null {
  const r = request !== null && typeof request === 'object' && !Array.isArray(request) ? (request as Record<string, unknown>) : {};
  if (!('id' in r)) return null;
  return errorResponse(
    r.id,
    ErrorCodes.TooLarge,
    `Not run: this batch's answer already reached maxResponseBytes (${max} bytes); send the rest in another batch`,
  );
}

const validId = (id: unknown): id is string | number | null => typeof id === 'string' || typeof id === 'number' || id === null;

const MAX_PARAMS_DEPTH = 32;

const BUSY_ANSWERING = 'Busy: the daemon is answering too much at once (maxAnswerBytesInFlight); retry shortly';

/** A small answer that holds no budget (a parse error, a refused batch). */
const unheld = (text: string): Answer => ({ text, release: () => {} });

/** Whether a JSON value nests deeper than `max` arrays and objects, found without recursion. */
export function depthExceeds(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * JSON-RPC 2.0 dispatch over any transport: parses text, enforces the batch limit, answers
 * batches as arrays and notifications with nothing, validates params with each method's zod
 * schema, and maps every error to a code that is never 0. Error messages go out as they were
 * built: they are made safe where they are made (by which field is secret), never by searching
 * their text for secrets, which would answer "[redacted]" to a caller who guessed one.
 */
export class RpcDispatcher {
  private readonly server: JSONRPCServer<CallContext>;
  /** Bytes of answers held at once, daemon-wide (maxAnswerBytesInFlight). */
  readonly budget: AnswerBudget;

  constructor(
    readonly log: Logger,
    private readonly limits: RpcLimits,
    private readonly authorize: (method: string, params: Record<string, unknown>, ctx: CallContext) => void = () => {},
    /** Told of every refused call of a mutating method, for the audit trail. */
    private readonly onRefused: (method: string, params: Record<string, unknown>, ctx: CallContext, err: RpcError) => Promise<void> = async () => {},
  ) {
    this.budget = new AnswerBudget(limits.maxAnswerBytesInFlight);
    this.server = new JSONRPCServer<CallContext>({ errorListener: () => {} });
    this.server.mapErrorToJSONRPCErrorResponse = (id, error) => this.mapError(id, error) as never;
  }

  register<N extends string, P extends z.ZodType, R extends z.ZodType>(method: MethodDescriptor<N, P, R>, handler: Handler<P, R>): void {
    this.server.addMethod(method.name, async (params, ctx) => {
      if (Array.isArray(params)) throw new RpcError(ErrorCodes.InvalidParams, `${method.name} takes params by name (an object), not by position`);
      const raw = (params ?? {}) as Record<string, unknown>;
      try {
        // Before anything can repeat a name in a message: names that fail their grammar are refused unrepeated.
        checkNames(method.name, raw);
        this.authorize(method.name, raw, ctx);
        const parsed = method.params.safeParse(raw);
        if (!parsed.success) throw invalid(`invalid params for ${method.name}`, parsed.error);
        return await handler(parsed.data, ctx);
      } catch (err) {
        const refusal = toRpcError(err, this.log, { method: method.name });
        if (method.mutates && refusal.code !== ErrorCodes.ConvergeFailed && refusal.code !== ErrorCodes.InternalError) {
          // The refusal is the answer, even if recording it fails.
          await this.onRefused(method.name, raw, ctx, refusal).catch((e: unknown) =>
            this.log.error('refusal not audited', { method: method.name, error: String(e) }),
          );
        }
        throw refusal;
      }
    });
  }

  private mapError(id: unknown, error: unknown): JSONRPCResponse {
    const e = toRpcError(error, this.log);
    return errorResponse(id, e.code, e.message, e.data);
  }

  /**
   * Answer one JSON text; null when nothing is to be sent back (only notifications). A batch is
   * answered one call after another within a byte budget, so no request, however it is batched,
   * makes the daemon hold more than one call's answer beyond maxResponseBytes: a call whose
   * answer does not fit answers too-large, naming the limit. Each part also takes its bytes from
   * the daemon-wide AnswerBudget, or answers busy; the caller calls `release` once the answer
   * has been written (or dropped), which gives them back.
   */
  async handleText(text: string, ctx: CallContext): Promise<Answer | null> {
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch {
      return unheld(JSON.stringify(errorResponse(null, ErrorCodes.ParseError, 'Parse error: the request is not valid JSON')));
    }
    let held = 0;
    const release = () => {
      this.budget.give(held);
      held = 0;
    };
    /** Set once a call's answer did not fit maxResponseBytes: the batch's answer is full. */
    let full = false;
    /** A response as text within both budgets, its bytes taken. */
    const take = (response: JSONRPCResponse, used: number): string => {
      let part = this.fit(response, used);
      if (part === undefined) {
        full = true;
        part = JSON.stringify(
          errorResponse(
            response.id,
            ErrorCodes.TooLarge,
            `Response too large: the answer would exceed maxResponseBytes (${this.limits.maxResponseBytes} bytes); ask for less (a smaller limit, fewer calls in one batch)`,
          ),
        );
      }
      let bytes = Buffer.byteLength(part);
      if (!this.budget.take(bytes, ctx.principal.role === 'admin' || bytes <= SMALL_ANSWER_BYTES)) {
        part = JSON.stringify(errorResponse(response.id, ErrorCodes.Busy, BUSY_ANSWERING));
        bytes = Buffer.byteLength(part);
        this.budget.take(bytes, true);
      }
      held += bytes;
      return part;
    };
    if (!Array.isArray(request)) {
      const response = await this.single(request, ctx);
      return response === null ? null : { text: take(response, 0), release };
    }
    if (request.length === 0) return unheld(JSON.stringify(errorResponse(null, ErrorCodes.InvalidRequest, 'Invalid Request: an empty batch')));
    if (request.length > this.limits.maxBatch) {
      return unheld(
        JSON.stringify(
          errorResponse(null, ErrorCodes.InvalidRequest, `Invalid Request: a batch of ${request.length} requests exceeds the limit of ${this.limits.maxBatch}`),
        ),
      );
    }
    const parts: string[] = [];
    let used = 2;
    try {
      for (const r of request) {
        // Once the answer is full, the calls after it are not run at all (a change must never be
        // made and then answered too-large); those with an id are told so.
        const response = full ? notRun(r, this.limits.maxResponseBytes) : await this.single(r, ctx);
        if (response === null) continue;
        const part = take(response, used);
        used += Buffer.byteLength(part) + 1;
        parts.push(part);
      }
    } catch (err) {
      release();
      throw err;
    }
    if (!parts.length) return null;
    return { text: `[${parts.join(',')}]`, release };
  }

  /** A response as text, or undefined when it would take the answer past maxResponseBytes. */
  private fit(response: JSONRPCResponse, used: number): string | undefined {
    const text = JSON.stringify(response);
    return used + Buffer.byteLength(text) <= this.limits.maxResponseBytes ? text : undefined;
  }

  private async single(request: unknown, ctx: CallContext): Promise<JSONRPCResponse | null> {
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
      return errorResponse(null, ErrorCodes.InvalidRequest, 'Invalid Request: not a request object');
    }
    const r = request as Record<string, unknown>;
    const hasId = 'id' in r;
    if (
      r.jsonrpc !== '2.0' ||
      typeof r.method !== 'string' ||
      (hasId && !validId(r.id)) ||
      (r.params !== undefined && (r.params === null || typeof r.params !== 'object'))
    ) {
      return errorResponse(
        hasId ? r.id : null,
        ErrorCodes.InvalidRequest,
        'Invalid Request: needs jsonrpc "2.0", a method name, an optional params object and an optional id',
      );
    }
    if (!this.server.hasMethod(r.method)) {
      // Repeated only when it looks like a method name: anything else could be escape sequences.
      const named = /^[A-Za-z][\w.]*$/.test(r.method) && r.method.length <= 64 ? `: ${r.method}` : ' (method names look like scope.get)';
      return hasId ? errorResponse(r.id, ErrorCodes.MethodNotFound, `Method not found${named}; rpc.discover lists them`) : null;
    }
    // Validation recurses; params nested deeper than any method needs are refused before it runs.
    if (depthExceeds(r.params, MAX_PARAMS_DEPTH)) {
      return hasId ? errorResponse(r.id, ErrorCodes.InvalidParams, `Invalid params: nested deeper than ${MAX_PARAMS_DEPTH} levels`) : null;
    }
    return this.server.receive(r as never, ctx) as Promise<JSONRPCResponse | null>;
  }
}
