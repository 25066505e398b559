export * from './api.js';
export {
  type BackendProbe,
  type BackendRequest,
  BackendUnavailableError,
  probeBackend,
  selectBackend,
} from './backend-select.js';
export {
  type CalibrateOptions,
  type CalibrationModel,
  type CalibrationProgress,
  type CalibrationResult,
  type CalibrationSource,
  calibrateModel,
  type DevPrompt,
  planFromStatistics,
  recordingAttention,
} from './calibrate.js';
export {
  DEFAULT_MODEL_WARNING_CODE,
  DEMO_MODEL_PACKAGE,
  type DefaultModelLookup,
  findDefaultModel,
  RANDOM_MODEL,
} from './default-model.js';
export {
  type CpuKascadeEngine,
  type CreateEngineOptions,
  createEngine,
  modelShape,
  PLAN_FILE,
  RANDOM_TINY_CONFIG,
  RANDOM_TINY_ID,
} from './engine.js';
export {
  type GenerationModel,
  IncrementalDetokenizer,
  type RunGenerationArgs,
  runGeneration,
  StopStringFilter,
} from './generate.js';
export * from './model/index.js';
export * from './policies/index.js';
export { argmax, createRng, createSampler, type Sampler, type SamplingOptions } from './sampling.js';
