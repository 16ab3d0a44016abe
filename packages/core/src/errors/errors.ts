/** Errors that cross the HTTP boundary: each carries a stable `code` and its HTTP status. */
export class SessionboxError extends Error {
  constructor(
    readonly code: string,
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
    super('invalid_request', message, 400, details);
  }
}

export class NotFoundError extends SessionboxError {
  constructor(what: string, id: string) {
    super(`${what}_not_found`, `${what} ${id} does not exist`, 404);
  }
}

export class SessionGoneError extends SessionboxError {
  constructor(id: string, reason: string, details?: Record<string, unknown>) {
    const code = reason === 'expired' ? 'session_expired' : 'session_terminated';
    const why = reason === 'expired' ? 'expired after its idle TTL' : `was terminated (${reason})`;
    super(code, `session ${id} ${why}`, 410, details);
  }
}

export class PayloadTooLargeError extends SessionboxError {
  constructor(message: string) {
    super('payload_too_large', message, 413);
  }
}

export class UnsupportedMediaTypeError extends SessionboxError {
  constructor(message: string) {
    super('unsupported_media_type', message, 415);
  }
}

export class UnavailableError extends SessionboxError {
  constructor(code: string, message: string) {
    super(code, message, 503);
  }
}

export class RateLimitedError extends SessionboxError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
    details?: Record<string, unknown>,
  ) {
    super('rate_limited', message, 429, details);
  }
}

export function isSessionboxError(e: unknown): e is SessionboxError {
  return e instanceof SessionboxError;
}
