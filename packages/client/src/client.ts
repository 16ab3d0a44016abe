import { SessionboxApiError, errorFromResponse } from './errors';
import { parseSse } from './sse';
import type {
  AnthropicToolDefinition,
  CreateSessionRequest,
  Execution,
  OpenAiToolDefinition,
  QueuedExecution,
  Session,
  SessionFile,
  SessionStatus,
  StreamEvent,
  ToolCallBody,
  ToolExecuteResponse,
} from './types';

export interface SessionboxClientOptions {
  /** e.g. `http://127.0.0.1:8000` (a path prefix is kept). */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>` to the API's own origin only. */
  apiKey?: string;
  /** Defaults to the global fetch (Node ≥ 18, browsers). */
  fetch?: typeof fetch;
}

export interface ExecuteOptions {
  timeoutMs?: number;
  /** true (the default): resolve with the finished Execution. false: resolve with the queued id at once. */
  wait?: boolean;
  signal?: AbortSignal;
}

export interface StreamOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface AttachOptions {
  /** SSE id of the last event already seen; the stream resumes after it. */
  lastEventId?: string;
  signal?: AbortSignal;
}

/** A thin typed client of the sessionbox REST API (v1). */
export class SessionboxClient {
  readonly baseUrl: string;
  private readonly origin: string;
  private readonly apiKey?: string;
  private readonly fetchImpl: typeof fetch;

  constructor(opts: SessionboxClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.origin = new URL(this.baseUrl).origin;
    this.apiKey = opts.apiKey;
    this.fetchImpl = opts.fetch ?? ((input, init) => fetch(input, init));
  }

  createSession(body: CreateSessionRequest = {}): Promise<Session> {
    return this.json('POST', '/v1/sessions', body);
  }

  getSession(id: string): Promise<Session> {
    return this.json('GET', `/v1/sessions/${enc(id)}`);
  }

  async listSessions(filter: { status?: SessionStatus; metadata?: Record<string, string> } = {}): Promise<Session[]> {
    const q = new URLSearchParams();
    if (filter.status) q.set('status', filter.status);
    for (const [k, v] of Object.entries(filter.metadata ?? {})) q.set(`metadata.${k}`, v);
    const qs = q.toString();
    const res = await this.json<{ sessions: Session[] }>('GET', `/v1/sessions${qs ? `?${qs}` : ''}`);
    return res.sessions;
  }

  async deleteSession(id: string): Promise<void> {
    await this.json('DELETE', `/v1/sessions/${enc(id)}`);
  }

  execute(sessionId: string, code: string, opts?: ExecuteOptions & { wait?: true }): Promise<Execution>;
  execute(sessionId: string, code: string, opts: ExecuteOptions & { wait: false }): Promise<QueuedExecution>;
  execute(sessionId: string, code: string, opts?: ExecuteOptions): Promise<Execution | QueuedExecution>;
  execute(sessionId: string, code: string, opts: ExecuteOptions = {}): Promise<Execution | QueuedExecution> {
    const wait = opts.wait ?? true;
    const body = { code, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) };
    return this.json('POST', `/v1/sessions/${enc(sessionId)}/executions?wait=${wait}`, body, { signal: opts.signal });
  }

  getExecution(sessionId: string, executionId: string): Promise<Execution> {
    return this.json('GET', `/v1/sessions/${enc(sessionId)}/executions/${enc(executionId)}`);
  }

  /** Runs code and yields its events as they happen; the last one is `done` with the whole Execution. */
  async *streamExecution(sessionId: string, code: string, opts: StreamOptions = {}): AsyncGenerator<StreamEvent> {
    const body = { code, ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}) };
    const res = await this.request('POST', `/v1/sessions/${enc(sessionId)}/executions`, {
      body,
      accept: 'text/event-stream',
      signal: opts.signal,
    });
    yield* this.events(res);
  }

  /** The events of an execution already submitted: all of them, or those after `lastEventId`. */
  async *streamEvents(sessionId: string, executionId: string, opts: AttachOptions = {}): AsyncGenerator<StreamEvent> {
    const res = await this.request('GET', `/v1/sessions/${enc(sessionId)}/executions/${enc(executionId)}/events`, {
      accept: 'text/event-stream',
      headers: opts.lastEventId ? { 'Last-Event-ID': opts.lastEventId } : {},
      signal: opts.signal,
    });
    yield* this.events(res);
  }

  /** A figure's PNG bytes, from `Execution.figures[].url` (absolute or relative to the base URL). */
  async getFigure(url: string): Promise<Buffer> {
    const res = await this.request('GET', url, { accept: 'image/png' });
    return Buffer.from(await res.arrayBuffer());
  }

  /** Writes a file into the session's working directory (parent directories are made). */
  async uploadFile(sessionId: string, path: string, data: Uint8Array | string): Promise<SessionFile> {
    const raw = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const res = await this.request('PUT', `/v1/sessions/${enc(sessionId)}/files/${filePath(path)}`, { raw, accept: 'application/json' });
    return (await res.json()) as SessionFile;
  }

  async downloadFile(sessionId: string, path: string): Promise<Buffer> {
    const res = await this.request('GET', `/v1/sessions/${enc(sessionId)}/files/${filePath(path)}`, { accept: '*/*' });
    return Buffer.from(await res.arrayBuffer());
  }

  async listFiles(sessionId: string): Promise<SessionFile[]> {
    return (await this.json<{ files: SessionFile[] }>('GET', `/v1/sessions/${enc(sessionId)}/files`)).files;
  }

  async deleteFile(sessionId: string, path: string): Promise<void> {
    await this.json('DELETE', `/v1/sessions/${enc(sessionId)}/files/${filePath(path)}`);
  }

  /** The `execute_python` tool definition, ready for an LLM's `tools` parameter. */
  listTools(format?: 'openai'): Promise<OpenAiToolDefinition[]>;
  listTools(format: 'anthropic'): Promise<AnthropicToolDefinition[]>;
  async listTools(format: 'openai' | 'anthropic' = 'openai'): Promise<(OpenAiToolDefinition | AnthropicToolDefinition)[]> {
    const res = await this.json<{ tools: (OpenAiToolDefinition | AnthropicToolDefinition)[] }>('GET', `/v1/tools?format=${format}`);
    return res.tools;
  }

  /**
   * Runs one `execute_python` tool call (an OpenAI `tool_call`, Responses `function_call`, Anthropic `tool_use`,
   * or `{ code, session_id }`) and returns `text` for the model plus the ready-made tool message.
   */
  callTool(body: ToolCallBody, opts: { signal?: AbortSignal } = {}): Promise<ToolExecuteResponse> {
    return this.json('POST', '/v1/tools/execute_python', body, opts);
  }

  private async *events(res: Response): AsyncGenerator<StreamEvent> {
    if (!res.body) throw new SessionboxApiError(res.status, 'stream_missing', 'the answer has no body');
    let lastId: string | undefined;
    for await (const msg of parseSse(res.body)) {
      const data = JSON.parse(msg.data);
      const id = msg.id ?? '';
      lastId = msg.id;
      switch (msg.event) {
        case 'started':
          yield { type: 'started', id, executionId: data.executionId, at: data.at };
          break;
        case 'stdout':
        case 'stderr':
          yield { type: msg.event, id, text: data.text };
          break;
        case 'figure':
          yield { type: 'figure', id, figure: data };
          break;
        case 'done':
          yield { type: 'done', id, execution: data };
          return;
        case 'error':
          throw new SessionboxApiError(0, data?.error?.code ?? 'stream_failed', data?.error?.message ?? 'the event stream failed', { lastEventId: lastId });
        default:
          break; // events this client does not know yet
      }
    }
    throw new SessionboxApiError(0, 'stream_ended', 'the event stream ended before `done`; resume with streamEvents(…, { lastEventId })', {
      lastEventId: lastId,
      location: res.headers.get('location'),
    });
  }

  private async json<T>(method: string, path: string, body?: unknown, opts: { signal?: AbortSignal } = {}): Promise<T> {
    const res = await this.request(method, path, { body, accept: 'application/json', signal: opts.signal });
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  private async request(
    method: string,
    pathOrUrl: string,
    opts: { body?: unknown; raw?: Uint8Array; accept: string; headers?: Record<string, string>; signal?: AbortSignal },
  ): Promise<Response> {
    const url = /^https?:\/\//i.test(pathOrUrl) ? pathOrUrl : this.baseUrl + pathOrUrl;
    const headers: Record<string, string> = { accept: opts.accept, ...opts.headers };
    if (this.apiKey && new URL(url).origin === this.origin) headers.authorization = `Bearer ${this.apiKey}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.raw !== undefined) headers['content-type'] = 'application/octet-stream';
    const res = await this.fetchImpl(url, {
      method,
      headers,
      body: opts.raw !== undefined ? opts.raw : opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      signal: opts.signal,
    });
    if (!res.ok) throw await errorFromResponse(res);
    return res;
  }
}

const enc = encodeURIComponent;
const filePath = (p: string) => p.split('/').map(enc).join('/');
