export { BACKENDS, type BackendFlag, ConfigError, parseConfig, type ServerConfig, USAGE } from './config.js';
export { HttpError, type OpenAIErrorBody, type OpenAIErrorType } from './errors.js';
export { createMetrics, type ServerMetrics } from './metrics.js';
export { QueueAbortedError, QueueFullError, Scheduler, type SchedulerOptions } from './scheduler.js';
export {
  type ChatRequest,
  type CompletionRequest,
  type KascadeField,
  POLICY_NAMES,
  type PolicyName,
} from './schemas.js';
export { type Running, startServer } from './serve.js';
export {
  type BuildServerOptions,
  buildServer,
  type KascadeServer,
  PUBLIC_DIR,
  type ServerLimits,
} from './server.js';
