export { changeDrift, changeTarget, describeChange } from './changes.js';
export type { Change, FileChange, FileRemoval, KernelHostnameChange, MasterBlockChange, PostconfChange, PostmapChange, ServiceChange } from './changes.js';
export {
  BLOCK_BEGIN,
  BLOCK_END,
  MASTER_CF,
  blockBegin,
  blockEnd,
  blockLineProblem,
  managedBlock,
  masterBlockChange,
  masterCfProblem,
  withManagedBlock,
} from './master-cf.js';
export { closest, distance } from './closest.js';
export { API_VERSION, ScopeInputError, definePlugin, defineScope, defineUnit, defineVar } from './define.js';
export type { Adoption, PlanContext, PluginDef, ScopeContext, ScopeDef, UnitDef, VarDef, VarValues } from './define.js';
export type { Endpoint, EndpointName, PostfixView, ServiceView, System } from './system.js';
export { redactValue } from './redact.js';
export { shellSettings, withShellSetting } from './shell-settings.js';
export { argText } from './words.js';
/** What a secret shows as, everywhere it would otherwise appear. */
export { REDACTED } from '@scoped/protocol';
export { zodText } from './zod-text.js';
/** zod, re-exported so a plugin's schemas are made by the same zod the daemon reads them with. */
export { z } from 'zod';
