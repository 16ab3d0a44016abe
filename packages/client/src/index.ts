export { SessionboxClient, type AttachOptions, type ExecuteOptions, type SessionboxClientOptions, type StreamOptions } from './client';
export { SessionboxApiError } from './errors';
export { parseSse, type SseMessage } from './sse';
export type * from './types';
