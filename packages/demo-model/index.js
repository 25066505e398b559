// @kascade/demo-model: where the trained demo checkpoint and its Kascade plan are on disk.
// Plain ESM with no dependencies; `index.d.ts` beside it gives the types.
import { fileURLToPath } from 'node:url';

/** The model's id, as the engine and the server report it (`/v1/models`). */
export const demoModelId = 'kascade-demo-model';

/**
 * Absolute path of the Hugging Face checkpoint directory (`config.json`, bf16 safetensors,
 * `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`, `kascade-plan.json`):
 * what `createEngine({ model })` and `loadModel` take.
 */
export const demoModelDir = fileURLToPath(new URL('./model', import.meta.url));

/** Absolute path of the calibrated Kascade plan shipped with the model (`kascade-plan.json`). */
export const demoPlanPath = fileURLToPath(new URL('./model/kascade-plan.json', import.meta.url));
