export { scopePluginSuite } from './suite.js';
export type { Sample, SuiteOptions, TestApi } from './suite.js';
export { treeDigest } from './tree.js';
export { postfixRoot, rootSystem } from './fixtures.js';
