export { SessionboxClient, type AttachOptions, type ExecuteOptions, type SessionboxClientOptions, type StreamOptions } from './client';
export { SessionboxSession, createSession, type CreateSessionOptions } from './session';
export { ConversationSession, TOOL_DESCRIPTION, TOOL_NAME, type ConversationOptions } from './tools/conversation';
export {
  SessionboxApiError,
  SessionboxAuthError,
  SessionboxNotFoundError,
  SessionGoneError,
  SessionboxRateLimitError,
  SessionboxValidationError,
} from './errors';
export { parseSse, type SseMessage } from './sse';
export type * from './types';
