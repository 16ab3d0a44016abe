import {
  SessionboxError,
  TERMINAL_STATUSES,
  errMsg,
  type Caller,
  type Execution,
  type ExecutionRecord,
  type SessionRecord,
  type ToolInputError,
  sessionUnusableMessage,
} from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from './context';
import { toApiExecution } from './presenters';

/**
 * Running code on behalf of the LLM tool, the MCP server and the drop-in endpoints: in a given
 * session or a new one, waiting for the end, with the errors the model can act on told apart.
 */

export interface RunRequest {
  code: string;
  /** Continue in this session; null makes one. */
  sessionId: string | null;
  caller: Caller;
  /** Base URL for figure and file links. */
  base: string;
  /** Stops waiting (the run itself goes on unless the session is removed). */
  signal?: AbortSignal;
  /** Labels for a session made here, e.g. `{ via: 'mcp' }`. */
  metadata?: Record<string, string>;
  /** The run's wall-clock limit; unset: the API's default. */
  timeoutMs?: number;
  /** A session made here gets network (never from the warm pool); the caller checks the operator allows it. */
  network?: boolean;
}

export interface RunOutcome {
  session: SessionRecord;
  created: boolean;
  record: ExecutionRecord;
  execution: Execution;
  /** The run reached a final state (false: the wait ended first). */
  finished: boolean;
}

export class ToolInputFailure extends Error {
  constructor(readonly toolError: ToolInputError) {
    super(toolError.message);
  }
}

export function defaultTimeoutMs(ctx: ApiContext): number {
  return ctx.executions.defaultTimeoutMs;
}

/** Errors the caller (a model) caused and can fix; anything else (Redis, Docker, capacity) is thrown on. */
function asToolInput(err: unknown, sessionId: string | null): ToolInputError | null {
  if (!(err instanceof SessionboxError)) return null;
  if (err.code === 'session_not_found' && sessionId) return { code: 'session_not_found', message: sessionUnusableMessage(sessionId, 'session_not_found') };
  if ((err.code === 'session_expired' || err.code === 'session_terminated') && sessionId) {
    return { code: 'session_expired', message: sessionUnusableMessage(sessionId, 'session_expired', err.code === 'session_expired' ? 'it expired after being idle' : 'it was closed') };
  }
  if (err.code === 'payload_too_large') return { code: 'code_too_large', message: `${err.message}. Send smaller code, or write data to files in /work over several calls.` };
  return null;
}

/** Runs `code` and waits for its end; a `ToolInputFailure` for what the model got wrong. Nothing half-made is left. */
export async function runForTool(ctx: ApiContext, p: RunRequest): Promise<RunOutcome> {
  const { sessions } = ctx.core;
  if (Buffer.byteLength(p.code, 'utf8') > ctx.config.maxCodeBytes) {
    throw new ToolInputFailure({ code: 'code_too_large', message: `The code is over ${ctx.config.maxCodeBytes} bytes. Send smaller code, or build data up in files in /work over several calls.` });
  }
  let session: SessionRecord;
  let created = false;
  try {
    if (p.sessionId) {
      if (!z.uuid().safeParse(p.sessionId).success) {
        throw new ToolInputFailure({ code: 'session_not_found', message: sessionUnusableMessage(p.sessionId, 'session_not_found') });
      }
      session = await sessions.getLive(p.sessionId, p.caller, true);
    } else {
      session = await sessions.create({ metadata: p.metadata }, p.caller);
      created = true;
    }
  } catch (err) {
    const te = asToolInput(err, p.sessionId);
    throw te ? new ToolInputFailure(te) : err;
  }
  let rec: ExecutionRecord;
  try {
    rec = await ctx.executions.submit(session.id, { code: p.code }, p.caller);
  } catch (err) {
    if (created) await sessions.terminate(session, 'rolled_back').catch(() => undefined);
    const te = asToolInput(err, p.sessionId);
    throw te ? new ToolInputFailure(te) : err;
  }
  const done = await ctx.executions.waitForEnd(rec.id, rec.timeoutMs + 120_000, p.signal);
  const record = done ?? rec;
  return {
    session,
    created,
    record,
    execution: toApiExecution(record, p.base),
    finished: TERMINAL_STATUSES.has(record.status),
  };
}

/**
 * Runs `code` in a session made for it alone and removes the session (container included) before
 * returning, whatever happens, so callers answer only once nothing is left (and no 24 h tombstone:
 * its records lapse within seconds, `TerminateOptions.forget`). `use` sees the finished
 * run while its figures are still stored, and returns what the caller needs from it.
 */
export async function runThrowaway<T>(
  ctx: ApiContext,
  p: Omit<RunRequest, 'sessionId'>,
  use: (outcome: RunOutcome) => Promise<T>,
): Promise<T> {
  if (Buffer.byteLength(p.code, 'utf8') > ctx.config.maxCodeBytes) {
    // same answer as the REST API, before any container is made
    throw new SessionboxError('payload_too_large', `code is over ${ctx.config.maxCodeBytes} bytes`, 413);
  }
  const session = await ctx.core.sessions.create({ metadata: p.metadata }, p.caller, { network: p.network });
  try {
    const rec = await ctx.executions.submit(session.id, { code: p.code, timeoutMs: p.timeoutMs }, p.caller);
    const done = (await ctx.executions.waitForEnd(rec.id, rec.timeoutMs + 120_000, p.signal)) ?? rec;
    return await use({ session, created: true, record: done, execution: toApiExecution(done, p.base), finished: TERMINAL_STATUSES.has(done.status) });
  } finally {
    await ctx.core.sessions.terminate(session, 'completed', { forget: true }).catch((err) =>
      ctx.logger.warn({ sessionId: session.id, err: errMsg(err) }, 'could not remove a throwaway session'),
    );
  }
}

/** PNG bytes of a run's figures (at most `max`, the last ones), while the session still holds them. */
export async function figureBytes(ctx: ApiContext, record: ExecutionRecord, max = 10): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const f of record.figures.slice(-max)) {
    const png = await ctx.core.executionStore.getFigure(f.id);
    if (png) out.push(png);
  }
  return out;
}
