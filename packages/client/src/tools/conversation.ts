import { SessionboxClient, type SessionboxClientOptions } from '../client';
import { SessionboxSession } from '../session';
import type { CreateSessionRequest } from '../types';

export const TOOL_NAME = 'execute_python';

export const TOOL_DESCRIPTION =
  'Run Python code in a sandbox that keeps its state between calls (variables, imports and files persist, as in a notebook). ' +
  'Print what you need to see; the value of a trailing expression is returned; matplotlib figures come back as image URLs. ' +
  'pandas, numpy and matplotlib are installed; there is no network.';

export const CODE_DESCRIPTION = 'The Python code to run.';

export interface ConversationOptions {
  /** A client, or the options to make one. */
  client: SessionboxClient | SessionboxClientOptions;
  /** How the conversation's session is made on first use (TTL, limits, metadata). */
  session?: CreateSessionRequest;
}

/**
 * One session for one conversation: made on the first tool call, reused by every later call (so the
 * model's variables persist), ended by `close()`. Give each conversation its own.
 */
export class ConversationSession {
  readonly client: SessionboxClient;
  private session: Promise<SessionboxSession> | null = null;

  constructor(private readonly opts: ConversationOptions) {
    this.client = opts.client instanceof SessionboxClient ? opts.client : new SessionboxClient(opts.client);
  }

  /** The session, made on first use. */
  get(): Promise<SessionboxSession> {
    this.session ??= this.client.createSession(this.opts.session ?? {}).then(
      (info) => new SessionboxSession(this.client, info),
      (err) => {
        this.session = null; // the next call may try again
        throw err;
      },
    );
    return this.session;
  }

  /** Runs one tool call and returns the text for the model (output, result, traceback, figure URLs). */
  async run(code: string, signal?: AbortSignal): Promise<string> {
    const s = await this.get();
    return (await s.callTool(code, { signal })).text;
  }

  get sessionId(): Promise<string | null> {
    return this.session ? this.session.then((s) => s.id) : Promise.resolve(null);
  }

  async close(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (s) await (await s).close();
  }
}
