/**
 * Builds the browser pages of web/ into dist/web (served by `polyarch serve` under /web/).
 * Relative asset urls (base './'), so the pages work under any path prefix.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = path.dirname(fileURLToPath(import.meta.url));

export default defineConfig({
  root,
  base: './',
  // No public/ folder: every file the pages use is imported.
  publicDir: false,
  logLevel: 'warn',
  build: {
    outDir: path.resolve(root, '../dist/web'),
    emptyOutDir: true,
    target: 'es2022',
    // No source maps: they would triple what the package ships.
    sourcemap: false,
    rolldownOptions: {
      input: {
        index: path.resolve(root, 'index.html'),
        editor: path.resolve(root, 'editor/index.html'),
        calendar: path.resolve(root, 'calendar/index.html'),
      },
    },
  },
});
