/** The public API of @sessionbox/core: each feature folder exports only what apps, tests and tools use. */
export * from './auth';
export * from './contract';
export * from './errors';
export * from './executions';
export * from './files';
export * from './infra';
export * from './ops';
export * from './runtime';
export * from './sessions';
export * from './tools';
export { createRuntimes, createCore } from './system';
export type { CoreParts } from './system';
