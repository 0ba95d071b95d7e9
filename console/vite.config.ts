import { defineConfig } from "vite";

// The console is built into the console service's package (services/console/dist), which
// serves it; nothing is loaded from elsewhere at run time.
export default defineConfig({
  build: {
    outDir: "../services/console/dist",
    emptyOutDir: true,
    // Module preload links only: no inline script, so the page's CSP needs no 'unsafe-inline'.
    modulePreload: { polyfill: false },
    target: "es2022",
  },
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
});
