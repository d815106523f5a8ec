import { defineConfig } from 'vite';

// The bundle wisp-server serves with a strict CSP: no inline scripts or
// styles (the module-preload polyfill would be one), workers as ES modules.
export default defineConfig({
  // JSX (Preact's automatic runtime) comes from tsconfig.json.
  build: {
    target: 'es2022',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    sourcemap: false,
  },
  worker: { format: 'es' },
});
