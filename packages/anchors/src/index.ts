export * from './accumulator.js';
export * from './errors.js';
export * from './heads.js';
export * from './plan.js';
export * from './select.js';
