/** The benchmark harness, for bench modules in `./benches/` and for tests. */

export { type CliArgs, CliError, parseCliArgs, usage } from './args.js';
export * from './harness.js';
export { gitCommit, machineInfo } from './machine.js';
export { benchNames, registry } from './registry.js';
export * from './results.js';
export { type Provenance, renderResults, resolveOptions, runBench, writeResults } from './run.js';
export * from './stats.js';
