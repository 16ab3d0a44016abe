export { ErrorCode, ERROR_CODES } from './error-code';
export { TERMINATION_REASONS, isTerminationReason } from './termination-reason';
export type { TerminationReason } from './termination-reason';
export {
  SessionboxError,
  ValidationError,
  InvalidPathError,
  UnauthorizedError,
  NotFoundError,
  PayloadTooLargeError,
  FileTooLargeError,
  UnsupportedMediaTypeError,
  UnavailableError,
  RateLimitedError,
  ChannelClosedError,
  PythonEscapeError,
  isSessionboxError,
} from './errors';
