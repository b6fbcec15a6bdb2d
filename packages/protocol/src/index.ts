export { ErrorCodes, ErrorDescriptions, RpcError, errorCodeName } from './errors.js';
export type { ErrorCode, ErrorCodeName, Issue } from './errors.js';
export { defineMethod } from './method.js';
export type { MethodDescriptor, ParamsOf, ResultOf } from './method.js';
export {
  ApplyResult,
  AuditEntry,
  AuditNoop,
  AuditRefusal,
  Drift,
  Role,
  auditList,
  EVENT_NOTIFICATION,
  EventMessage,
  Job,
  Queued,
  eventsSubscribe,
  eventsUnsubscribe,
  jobCancel,
  jobGet,
  JOB_WAIT_MAX_MS,
  rpcDiscover,
  tokenCreate,
  tokenList,
  tokenRevoke,
  guiLogin,
  Pending,
  PlanChange,
  RecoveryStatus,
  daemonStatus,
  methods,
  scopeAdopt,
  scopeCheck,
  scopeGet,
  scopeInfo,
  scopeList,
  scopeReset,
  scopeSet,
  unitConverge,
  unitList,
  varGet,
  varList,
  varSet,
} from './methods.js';
export type { AnyMethod, Json, MethodByName, MethodName } from './methods.js';
/** Redaction marker shown wherever a secret would be. */
export const REDACTED = '[redacted]';
export { buildOpenRpc } from './openrpc.js';
