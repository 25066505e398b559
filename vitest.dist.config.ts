import { defineConfig } from 'vitest/config';

// The same tests, with `@kascade/*` imports resolved to each package's built `dist`
// (the published shape). Relative imports inside a package still load its source.
export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts', 'scripts/**/*.test.ts'],
    exclude: ['**/*.source-only.test.ts', '**/node_modules/**'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    env: { KASCADE_TEST_DIST: '1' },
  },
});
