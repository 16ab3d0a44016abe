import { ErrorCode } from './error-code';
import type { TerminationReason } from './termination-reason';

/** Errors that cross the HTTP boundary: each carries a stable `code` and its HTTP status. */
export class SessionboxError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly status: number,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }

  toJSON() {
    return { error: { code: this.code, message: this.message, ...(this.details ?? {}) } };
  }
}

export class ValidationError extends SessionboxError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(ErrorCode.InvalidRequest, message, 400, details);
  }
}

export class InvalidPathError extends SessionboxError {
  constructor(message: string) {
    super(ErrorCode.InvalidPath, message, 400);
  }
}

export class UnauthorizedError extends SessionboxError {
  constructor(message: string) {
    super(ErrorCode.Unauthorized, message, 401);
  }
}

const NOT_FOUND = {
  session: ErrorCode.SessionNotFound,
  execution: ErrorCode.ExecutionNotFound,
  figure: ErrorCode.FigureNotFound,
  file: ErrorCode.FileNotFound,
  archive: ErrorCode.ArchiveNotFound,
  route: ErrorCode.RouteNotFound,
  'cleanup plan': ErrorCode.CleanupPlanNotFound,
} as const;

export class NotFoundError extends SessionboxError {
  constructor(what: keyof typeof NOT_FOUND, id: string) {
    super(NOT_FOUND[what], `${what} ${id} does not exist`, 404);
  }
}

/** A 410 for a session that has ended; `error.reason` says why (also in the message, for people). */
export class SessionGoneError extends SessionboxError {
  constructor(id: string, reason: TerminationReason, details?: Record<string, unknown>) {
    const code = reason === 'expired' ? ErrorCode.SessionExpired : ErrorCode.SessionTerminated;
    const why = reason === 'expired' ? 'expired after its idle TTL' : `was terminated (${reason})`;
    super(code, `session ${id} ${why}`, 410, { reason, ...details });
  }
}

export class PayloadTooLargeError extends SessionboxError {
  constructor(message: string) {
    super(ErrorCode.PayloadTooLarge, message, 413);
  }
}

export class FileTooLargeError extends SessionboxError {
  constructor(code: typeof ErrorCode.FileTooLarge | typeof ErrorCode.SessionFilesTooLarge | typeof ErrorCode.ArchiveTooLarge, message: string) {
    super(code, message, 413);
  }
}

export class UnsupportedMediaTypeError extends SessionboxError {
  constructor(message: string) {
    super(ErrorCode.UnsupportedMediaType, message, 415);
  }
}

export class RateLimitedError extends SessionboxError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
    details?: Record<string, unknown>,
  ) {
    super(ErrorCode.RateLimited, message, 429, details);
  }
}

type UnavailableCode =
  | typeof ErrorCode.RedisUnavailable
  | typeof ErrorCode.DockerUnavailable
  | typeof ErrorCode.StoreUnavailable
  | typeof ErrorCode.QueueUnavailable
  | typeof ErrorCode.CapacityExhausted
  | typeof ErrorCode.ContainerStartFailed
  | typeof ErrorCode.HostUnknown
  | typeof ErrorCode.SessionUnreachable
  | typeof ErrorCode.StreamFailed
  | typeof ErrorCode.ShuttingDown;

export class UnavailableError extends SessionboxError {
  constructor(code: UnavailableCode, message: string) {
    super(code, message, 503);
  }
}

export function isSessionboxError(e: unknown): e is SessionboxError {
  return e instanceof SessionboxError;
}

// Errors that stay inside the system (never an HTTP answer by themselves).

/** The attached stream of a session container ended (runtime/kernel-channel.ts). */
export class ChannelClosedError extends Error {
  constructor(message = 'the session container closed its stream') {
    super(message);
    this.name = 'ChannelClosedError';
  }
}

/** Text that Python's unicode_escape codec would refuse, in strict mode (tools/python-escape.ts). */
export class PythonEscapeError extends Error {
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
    this.name = 'PythonEscapeError';
  }
}
