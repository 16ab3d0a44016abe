export type { ContainerRuntime } from './container-runtime';
export { DockerRuntime } from './docker-runtime';
export { KernelChannel, KernelChannelPool } from './kernel-channel';
export { LineSplitter } from './line-splitter';
export { RUNNER_ERROR_CODES, RUNNER_ERRORS, runnerErrorCode } from './runner-errors';
export type { RunnerErrorCode } from './runner-errors';
