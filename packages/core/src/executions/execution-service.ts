import { v4 as uuidv4 } from 'uuid';
import { NotFoundError, PayloadTooLargeError, UnavailableError, ValidationError } from '../errors/errors';
import type { ExecutionEvents } from './execution-events';
import type { ExecutionQueues } from './execution-queue';
import { SessionTurns } from './turns';
import { newExecutionRecord, type ExecutionRecord, type ExecutionStore } from './execution-store';
import { DEFAULT_EXECUTION_TIMEOUT_MS, TERMINAL_STATUSES, type ExecuteBody } from '../contract/schemas';
import type { SessionService } from '../sessions/session-service';
import type { Caller } from '../auth/caller';
import { throwOnMultiError } from '../sessions/session-store';
import { coalesce } from '../infra/coalesce';
import { errMsg } from '../infra/err-msg';

export interface ExecutionServiceOptions {
  sessions: SessionService;
  executions: ExecutionStore;
  queues: ExecutionQueues;
  events: ExecutionEvents;
  maxCodeBytes: number;
  maxTimeoutMs: number;
  /** Default: `DEFAULT_EXECUTION_TIMEOUT_MS`. */
  defaultTimeoutMs?: number;
}

/** The API side of running code: record it, queue it on its session's host, wait for its end. */
export class ExecutionService {
  /** A run's limit when the request gives none. */
  readonly defaultTimeoutMs: number;
  private readonly turns: SessionTurns;

  constructor(readonly opts: ExecutionServiceOptions) {
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? DEFAULT_EXECUTION_TIMEOUT_MS;
    // API side: every dispatch names the session's host.
    this.turns = new SessionTurns({ store: opts.sessions.store, executions: opts.executions, queues: opts.queues, host: '' });
  }

  async submit(sessionId: string, body: ExecuteBody, caller: Caller): Promise<ExecutionRecord> {
    if (Buffer.byteLength(body.code, 'utf8') > this.opts.maxCodeBytes) {
      throw new PayloadTooLargeError(`code is over ${this.opts.maxCodeBytes} bytes`);
    }
    const timeoutMs = body.timeoutMs ?? this.defaultTimeoutMs;
    if (timeoutMs > this.opts.maxTimeoutMs) {
      throw new ValidationError(`timeoutMs: must be at most ${this.opts.maxTimeoutMs}`, { field: 'timeoutMs' });
    }
    const session = await this.opts.sessions.getLive(sessionId, caller, false);
    const limits = this.opts.sessions.opts.limits;
    await limits?.countExecution(caller);
    const id = uuidv4();
    await limits?.admitExecution(caller, sessionId, id);
    let rec: ExecutionRecord;
    let due: boolean;
    try {
      const seq = await this.opts.sessions.store.nextSeq(sessionId);
      rec = newExecutionRecord({ id, sessionId, seq, code: body.code, timeoutMs });
      // The record, whether its turn has come, and the session's touch (its idle TTL starts over) in one transaction.
      const m = this.opts.executions.multi();
      this.turns.queueIsDue(m, sessionId, seq);
      this.opts.executions.queueCreate(m, rec);
      this.opts.sessions.store.queueTouch(m, sessionId);
      const res = await m.exec();
      throwOnMultiError(res);
      due = res![0][1] === 1;
    } catch (err) {
      await limits?.executionFinished(caller.owner, sessionId, id).catch(() => undefined);
      throw err;
    }
    // Not due: it waits as a record only, and the run before it queues it when it ends (turns.ts).
    if (!due) return rec;
    try {
      await this.opts.queues.add(session.host, { executionId: rec.id, sessionId });
    } catch (err) {
      // Nothing half-made: the record goes, and the turn moves on so later runs are not held up.
      await this.opts.executions.discard(rec).catch(() => undefined);
      await limits?.executionFinished(caller.owner, sessionId, id).catch(() => undefined);
      await this.turns.advance(sessionId, rec.seq, session.host).catch(() => undefined);
      throw new UnavailableError('queue_unavailable', `could not queue the execution: ${errMsg(err)}`);
    }
    return rec;
  }

  async get(sessionId: string, executionId: string, caller: Caller): Promise<ExecutionRecord> {
    await this.opts.sessions.find(sessionId, caller);
    const rec = await this.opts.executions.get(executionId);
    if (!rec || rec.sessionId !== sessionId) throw new NotFoundError('execution', executionId);
    return rec;
  }

  /** Resolves with the record once it is final, or with its current state after `maxWaitMs`. */
  waitForEnd(executionId: string, maxWaitMs: number, signal?: AbortSignal): Promise<ExecutionRecord | null> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (r: ExecutionRecord | null, err?: unknown) => {
        if (settled) return;
        settled = true;
        off();
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(r);
      };
      const check = coalesce(
        async () => {
          if (settled) return true;
          const rec = await this.opts.executions.get(executionId);
          if (!rec || TERMINAL_STATUSES.has(rec.status)) finish(rec);
          return settled;
        },
        (err) => finish(null, err),
      );
      // Only the `done` event can make the record final (a bare notification may be anything).
      const off = this.opts.events.on(executionId, (type) => (type === undefined || type === 'done') && void check());
      const onAbort = () => finish(null);
      signal?.addEventListener('abort', onAbort);
      const timer = setTimeout(async () => finish(await this.opts.executions.get(executionId).catch(() => null)), maxWaitMs);
      void this.opts.events.start().then(check, (err) => finish(null, err));
    });
  }
}
