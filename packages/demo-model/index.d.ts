/** The model's id, as the engine and the server report it (`/v1/models`). */
export declare const demoModelId: 'kascade-demo-model';
/**
 * Absolute path of the Hugging Face checkpoint directory (`config.json`, bf16 safetensors,
 * `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`, `kascade-plan.json`):
 * what `createEngine({ model })` and `loadModel` take.
 */
export declare const demoModelDir: string;
/** Absolute path of the calibrated Kascade plan shipped with the model (`kascade-plan.json`). */
export declare const demoPlanPath: string;
