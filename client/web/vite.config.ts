import { defineConfig } from "vite";

// Built into dist/ and served by `circle serve`: /join -> dist/index.html, /assets -> dist/assets.
// No inline scripts (the server's CSP is default-src 'self'); no CDN at runtime.
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: "es2022",
  },
});
