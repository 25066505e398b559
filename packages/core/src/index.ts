export * from './types.js';
export * from './backend.js';
export * from './budget.js';
export * from './similarity.js';
