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

export async function errorFromResponse(res: Response): Promise<SessionboxApiError> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } & Record<string, unknown> };
    if (body?.error && typeof body.error.code === 'string') {
      const { code, message, ...details } = body.error;
      return new SessionboxApiError(res.status, code as string, String(message ?? code), details);
    }
  } catch {
    // not JSON: fall through
  }
  return new SessionboxApiError(res.status, `http_${res.status}`, text.slice(0, 500) || res.statusText);
}
