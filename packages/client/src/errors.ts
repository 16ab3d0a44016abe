/** A non-2xx answer of the API (`{ "error": { "code", "message" } }`), or a stream that broke off. */
export class SessionboxApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'SessionboxApiError';
  }
}

/** 401: no API key, or not a valid one. */
export class SessionboxAuthError extends SessionboxApiError {
  override name = 'SessionboxAuthError';
}

/** 404: no such session (or it belongs to another key), execution, file or figure. */
export class SessionboxNotFoundError extends SessionboxApiError {
  override name = 'SessionboxNotFoundError';
}

/** 410: the session ended (TTL, DELETE, lost container); `details.restorable` says whether its files can come back. */
export class SessionGoneError extends SessionboxApiError {
  override name = 'SessionGoneError';
}

/** 429: a per-key cap; `retryAfterSeconds` when the API said. */
export class SessionboxRateLimitError extends SessionboxApiError {
  override name = 'SessionboxRateLimitError';
  get retryAfterSeconds(): number | null {
    const v = this.details?.retryAfterSeconds;
    return typeof v === 'number' ? v : null;
  }
}

/** 400/413/415: the request itself is wrong (`details.field` names the field when known). */
export class SessionboxValidationError extends SessionboxApiError {
  override name = 'SessionboxValidationError';
}

function typed(status: number, code: string, message: string, details?: Record<string, unknown>): SessionboxApiError {
  if (status === 401) return new SessionboxAuthError(status, code, message, details);
  if (status === 404) return new SessionboxNotFoundError(status, code, message, details);
  if (status === 410) return new SessionGoneError(status, code, message, details);
  if (status === 429) return new SessionboxRateLimitError(status, code, message, details);
  if (status === 400 || status === 413 || status === 415) return new SessionboxValidationError(status, code, message, details);
  return new SessionboxApiError(status, code, message, details);
}

export async function errorFromResponse(res: Response): Promise<SessionboxApiError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } & Record<string, unknown> };
    if (body?.error && typeof body.error.code === 'string') {
      const { code, message, ...details } = body.error;
      return typed(res.status, code as string, String(message ?? code), details);
    }
  } catch {
    // not JSON: fall through
  }
  return typed(res.status, `http_${res.status}`, text.slice(0, 500) || res.statusText);
}
