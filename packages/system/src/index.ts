export { ExecError, exec } from './exec.js';
export type { ExecOptions, ExecResult } from './exec.js';
export { hostPath, modeIfExists, readIfExists, removeFile, writeFileAtomic } from './files.js';
export { HostSystem } from './host.js';
export type { HostSystemOptions, Snapshot } from './host.js';
export { assertSafeParam, editMainCf, parseMainCf } from './maincf.js';
export { PostfixAdapter } from './postfix.js';
export { DirectServiceDriver, SystemdServiceDriver, chooseServiceDriver } from './services.js';
export type { ServiceAction, ServiceDriver } from './services.js';
