import { defaultClientConditions, defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// Tests import each package's TypeScript source through the `@kascade/source`
// export condition; `vitest.dist.config.ts` re-runs them against the built `dist`.
const include = ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts', 'scripts/**/*.test.ts'];

export default defineConfig({
  resolve: { conditions: ['@kascade/source', ...defaultClientConditions] },
  ssr: { resolve: { conditions: ['@kascade/source', ...defaultServerConditions] } },
  test: { include, testTimeout: 120_000, hookTimeout: 120_000 },
});
