/**
 * Every error code scoped answers with, in one table. The JSON-RPC 2.0 codes keep their
 * meaning; domain errors live in -32000..-32099. A code is never 0.
 */
export const ErrorCodes = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  Unauthorized: -32001,
  ScopeNotFound: -32002,
  Forbidden: -32003,
  Conflict: -32004,
  ConvergeFailed: -32005,
  PluginError: -32006,
  Timeout: -32007,
  Busy: -32008,
  NotFound: -32009,
  TooLarge: -32010,
} as const;

export type ErrorCodeName = keyof typeof ErrorCodes;
export type ErrorCode = (typeof ErrorCodes)[ErrorCodeName];

/** What each code means, for documentation and for clients that print them. */
export const ErrorDescriptions: Record<ErrorCodeName, string> = {
  ParseError: 'the request is not valid JSON',
  InvalidRequest: 'the request is not a valid JSON-RPC 2.0 request, or breaks a size limit',
  MethodNotFound: 'no such method',
  InvalidParams: 'the params or the value are invalid; data holds the issues',
  InternalError: 'an unexpected error; the detail is in the daemon log',
  Unauthorized: 'no valid bearer token',
  ScopeNotFound: 'no such scope, var or unit',
  Forbidden: 'the token lacks the permission',
  Conflict: 'the state moved on: the scope is past the revision the caller expected, or the job to cancel already ended',
  ConvergeFailed: 'applying the change failed and the system was rolled back',
  PluginError: 'a plugin failed to load or misbehaved',
  Timeout: 'an operation exceeded its time limit',
  Busy: 'too many requests or connections',
  NotFound: 'no such object',
  TooLarge: 'a request, batch or message exceeds the configured limit',
};

/** An issue of a validation failure, as carried in `error.data.issues`. */
export interface Issue {
  path: (string | number)[];
  message: string;
}

/**
 * An error that crosses the wire as it is: its code, message and data become the JSON-RPC
 * error object. Anything else thrown inside the daemon becomes InternalError.
 */
export class RpcError extends Error {
  override readonly name = 'RpcError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }

  toJSON(): { code: number; message: string; data?: unknown } {
    return this.data === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, data: this.data };
  }
}

/** The name of a code, or undefined when it is not one of ours. */
export function errorCodeName(code: number): ErrorCodeName | undefined {
  for (const [name, value] of Object.entries(ErrorCodes)) if (value === code) return name as ErrorCodeName;
  return undefined;
}
