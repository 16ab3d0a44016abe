export type { ContainerRuntime } from './container-runtime';
export { DockerRuntime } from './docker-runtime';
export { KernelChannel, KernelChannelPool } from './kernel-channel';
export { LineSplitter } from './line-splitter';
