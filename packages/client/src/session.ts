import { SessionboxClient, type ExecuteOptions, type SessionboxClientOptions, type StreamOptions } from './client';
import type { CreateSessionRequest, Execution, Session, SessionFile, StreamEvent, ToolExecuteResponse } from './types';

/** One session (its own container and interpreter): run code, move files, close. */
export class SessionboxSession {
  constructor(
    readonly client: SessionboxClient,
    readonly info: Session,
  ) {}

  get id(): string {
    return this.info.id;
  }

  /** Runs code and resolves with the finished Execution (stdout, result, error, figures, files). */
  execute(code: string, opts: Omit<ExecuteOptions, 'wait'> = {}): Promise<Execution> {
    return this.client.execute(this.id, code, { ...opts, wait: true });
  }

  /** Runs code and yields its events as they happen: `started`, `stdout`/`stderr` chunks, `figure`, then `done`. */
  stream(code: string, opts: StreamOptions = {}): AsyncGenerator<StreamEvent> {
    return this.client.streamExecution(this.id, code, opts);
  }

  /** The `execute_python` tool call in this session: `text` is what a model should read. */
  callTool(code: string, opts: { signal?: AbortSignal } = {}): Promise<ToolExecuteResponse> {
    return this.client.callTool({ code, session_id: this.id }, opts);
  }

  readonly files = {
    upload: (path: string, data: Uint8Array | string): Promise<SessionFile> => this.client.uploadFile(this.id, path, data),
    download: (path: string): Promise<Buffer> => this.client.downloadFile(this.id, path),
    list: (): Promise<SessionFile[]> => this.client.listFiles(this.id),
    delete: (path: string): Promise<void> => this.client.deleteFile(this.id, path),
  };

  /** Ends the session: its container is gone when this resolves. */
  close(): Promise<void> {
    return this.client.deleteSession(this.id);
  }
}

export type CreateSessionOptions = SessionboxClientOptions & CreateSessionRequest;

/** `const s = await createSession({ baseUrl, apiKey })`: a client and a new session in one call. */
export async function createSession(opts: CreateSessionOptions): Promise<SessionboxSession> {
  const { baseUrl, apiKey, fetch, ...body } = opts;
  const client = new SessionboxClient({ baseUrl, apiKey, fetch });
  return new SessionboxSession(client, await client.createSession(body));
}
