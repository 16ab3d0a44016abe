export { ApiKeyring } from './api-keys';
export type { Caller } from './caller';
export type { KeyLimits } from './key-limits';
