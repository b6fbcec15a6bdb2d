// The layering of the house, checked by `npm run lint:layering` (and so by `npm run lint` and `npm test`).
// A workspace import resolves through node_modules to the workspace's folder (its dist/ once built);
// before a build it stays the bare name, so each rule names both forms.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'cli-and-client-not-daemon',
      comment: 'cpcmd and the client talk to scoped over JSON-RPC only: share types through @scoped/protocol, not the daemon.',
      severity: 'error',
      from: { path: '^packages/(cli|client)/' },
      to: { path: '^(packages/daemon/|@scoped/daemon(/|$))' },
    },
    {
      name: 'plugins-not-system-or-daemon',
      comment: 'A plugin sees the host only through @scoped/sdk (its System interface and z); first-party plugins load like third-party ones.',
      severity: 'error',
      from: { path: '^plugins/' },
      to: { path: '^(packages/(system|daemon)/|@scoped/(system|daemon)(/|$))' },
    },
    {
      name: 'protocol-imports-nothing-of-ours',
      comment: 'The protocol is the bottom layer, shared by every end: it may import only itself and third-party packages.',
      severity: 'error',
      from: { path: '^packages/protocol/' },
      to: { path: '^(packages/|plugins/|@scoped/|scoped-plugin-)', pathNot: '^packages/protocol/' },
    },
  ],
  options: {
    // Only the sources are cruised (package.json's lint:layering names packages/*/src and plugins/*/src); an import that
    // lands in another workspace's dist/ or in node_modules is recorded but not followed.
    doNotFollow: { path: ['(^|/)node_modules/', '^(packages|plugins)/[^/]+/dist/'] },
    // Type-only imports count too: a layer may not lean on another's types either.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.base.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
  },
};
