import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm'],
  // The bundled .d.ts loses src/index.ts's `/// <reference types>`; without it a consumer's
  // tsc cannot find GPUDevice & co. (checked by scripts/pack-test.mjs).
  dts: { banner: '/// <reference types="@webgpu/types" />' },
  clean: true,
  sourcemap: true,
  target: 'node20',
});
