/** An answer of the API that is not 2xx, with its `{ error: { code, message } }`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Session {
  id: string;
  status: string;
  createdAt: string;
  lastActiveAt: string;
  expiresAt: string;
  ttlSeconds: number;
  limits: { memoryMb: number; cpus: number; pids: number; diskMb: number };
  metadata: Record<string, string>;
  host: string;
}

export interface Figure {
  id: string;
  url: string;
  width: number;
  height: number;
}

export interface OutputFile {
  path: string;
  size: number;
  mimeType: string;
  url: string;
}

export interface Execution {
  id: string;
  status: string;
  stdout: string;
  stderr: string;
  result: string | null;
  error: { name: string; value: string; traceback: string } | null;
  figures: Figure[];
  files: OutputFile[];
  durationMs: number | null;
}

export type StreamEvent =
  | { event: 'started'; data: { executionId: string } }
  | { event: 'stdout' | 'stderr'; data: { text: string } }
  | { event: 'figure'; data: Figure }
  | { event: 'done'; data: Execution }
  | { event: 'error'; data: { error: { code: string; message: string } } };

const KEY_STORE = 'sessionbox.apiKey';

/** Same-origin path of a URL the API built (it may carry a public base URL). */
export function apiPath(url: string): string {
  const u = new URL(url, location.origin);
  return u.pathname + u.search;
}

/**
 * The API as the console uses it. The key lives in sessionStorage only (gone with the tab) and
 * travels in the Authorization header, never in a URL.
 */
export class ApiClient {
  key: string | null = sessionStorage.getItem(KEY_STORE);

  setKey(key: string | null) {
    this.key = key;
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.key ? { Authorization: `Bearer ${this.key}` } : {}), ...extra };
  }

  async raw(method: string, path: string, body?: BodyInit, headers: Record<string, string> = {}): Promise<Response> {
    const res = await fetch(path, { method, headers: this.headers(headers), body, credentials: 'omit', cache: 'no-store' });
    if (!res.ok) {
      let code = 'http_error';
      let message = `${res.status} ${res.statusText}`;
      try {
        const j = await res.json();
        code = j?.error?.code ?? code;
        message = j?.error?.message ?? message;
      } catch {
        /* not JSON */
      }
      throw new ApiError(res.status, code, message);
    }
    return res;
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.raw(method, path, body === undefined ? undefined : JSON.stringify(body), body === undefined ? {} : { 'Content-Type': 'application/json' });
    return res.status === 204 ? (undefined as T) : ((await res.json()) as T);
  }

  /** A figure or a file as an object URL (an <img> or <a> cannot send the Authorization header). */
  async blobUrl(url: string): Promise<string> {
    const res = await this.raw('GET', apiPath(url));
    return URL.createObjectURL(await res.blob());
  }

  /** Runs code and calls `on` for each Server-Sent Event of the run as it arrives. */
  async execute(sessionId: string, code: string, on: (ev: StreamEvent) => void): Promise<void> {
    const res = await this.raw('POST', `/v1/sessions/${sessionId}/executions`, JSON.stringify({ code }), {
      'Content-Type': 'application/json',
      Accept: 'text/event-stream',
    });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut: number;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of frame.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (data.length) on({ event, data: JSON.parse(data.join('\n')) } as StreamEvent);
      }
    }
  }
}
