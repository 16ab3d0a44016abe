export { ApiKeyring } from './api-keys';
export type { Caller } from './caller';
