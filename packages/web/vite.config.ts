import { defineConfig } from 'vite';

// Preact's JSX through esbuild (no Babel); hashed assets under /assets, served by scoped as they are.
export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { outDir: 'dist', emptyOutDir: true, assetsDir: 'assets', target: 'es2022', modulePreload: { polyfill: false } },
});
