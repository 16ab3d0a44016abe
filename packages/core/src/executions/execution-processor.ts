import { setTimeout as sleep } from 'node:timers/promises';
import type { TerminationReason } from '../errors/termination-reason';
import { v4 as uuidv4 } from 'uuid';
import type { Logger } from 'pino';
import type { ExecutionQueues } from './execution-queue';
import type { ExecutionEvent, ExecutionRecord, ExecutionStore } from './execution-store';
import { ChannelClosedError } from '../errors/errors';
import type { KernelChannelPool, KernelEvent } from '../runtime/kernel-channel';
import { disabledMetrics, type Metrics } from '../infra/metrics';
import { SessionTurns, isMyTurn } from './turns';
import { mimeTypeOf } from '../files/mime';
import { errMsg } from '../infra/err-msg';
import { failedOutcome, type Execution, type ExecutionOutcome } from '../contract/schemas';
import { deathReason } from '../runtime/death-reason';
import { checkPng } from './png';
import type { SessionService } from '../sessions/session-service';
import { throwOnMultiError, type SessionRecord } from '../sessions/session-store';

export interface ExecutionProcessorOptions {
  sessions: SessionService;
  executions: ExecutionStore;
  channels: KernelChannelPool;
  queues: ExecutionQueues;
  host: string;
  workerId: string;
  maxOutputBytes: number;
  maxFigures: number;
  maxFigurePixels: number;
  /** One figure's PNG at most (SESSIONBOX_MAX_FIGURE_BYTES). */
  maxFigureBytes: number;
  /** All figures of one session at most, kept while it lives (SESSIONBOX_MAX_SESSION_FIGURE_BYTES). */
  maxSessionFigureBytes: number;
  logger: Logger;
  metrics?: Metrics;
  /** Extra time past `timeoutMs` for a kernel still importing, before the worker gives up on it. */
  startupAllowanceMs?: number;
}

/** The runner's `done` event: the outcome, and the files the run wrote. */
type DoneEvent = KernelEvent &
  ExecutionOutcome & {
    status: 'succeeded' | 'failed' | 'timed_out';
    files: { path: string; size: number; mtimeMs: number }[];
  };

/** How long output chunks wait for company before they are stored (the supervisor already coalesces ≤ 20 ms). */
const OUTPUT_BATCH_MS = 2;


/**
 * PNG bytes one execution may store (the supervisor applies the same cap). A second fence: under
 * gVisor user code can write to the container's stdout itself, past the supervisor.
 */
const MAX_FIGURE_BYTES_PER_EXECUTION = 64 * 1024 * 1024;

/** Where code runs: one queued execution, in its session's order, through the session's kernel channel. */
export class ExecutionProcessor {
  private readonly figureBytes = new WeakMap<ExecutionRecord, number>();
  private readonly turns: SessionTurns;

  /** The process's metrics, or counters nobody reads when none were given. */
  private readonly metrics: Metrics;

  constructor(readonly opts: ExecutionProcessorOptions) {
    this.metrics = opts.metrics ?? disabledMetrics();
    this.turns = new SessionTurns({ store: opts.sessions.store, executions: opts.executions, queues: opts.queues, host: opts.host });
  }

  async process(executionId: string, sessionId: string): Promise<void> {
    try {
      await this.processInTurn(executionId, sessionId);
    } catch (err) {
      // Whatever failed, the session's next execution must not wait for this one forever.
      const rec = await this.opts.executions.get(executionId).catch(() => null);
      if (rec) await this.turns.advance(sessionId, rec.seq).catch(() => undefined);
      throw err;
    }
  }

  private async processInTurn(executionId: string, sessionId: string): Promise<void> {
    const { sessions, executions } = this.opts;
    // Both reads at once; the session hash carries the turn too.
    const [{ rec: session, turn }, first] = await Promise.all([sessions.store.getWithTurn(sessionId), executions.get(executionId)]);
    let rec = first;
    if (!rec) return; // discarded before it ran
    if (!session || session.status === 'terminated') {
      return this.endWithoutRunning(rec, 'session_terminated', 'SessionTerminated', `session ${sessionId} has ended`, session?.owner);
    }
    // Only a due execution is queued (turns.ts); this wait is the fallback for one queued otherwise.
    if (!isMyTurn(turn, rec.seq)) {
      await this.turns.waitFor(rec);
      rec = (await executions.get(executionId)) ?? rec;
    }
    if (rec.status !== 'queued') {
      if (rec.status === 'running') await this.recoverLost(rec, session);
      return;
    }
    await this.run(rec, session);
  }

  /**
   * A job that comes back while its record says `running` lost its worker mid-run. Re-running
   * user code on top of a half-finished run is never safe: stop what is left of it, and fail it.
   */
  private async recoverLost(rec: ExecutionRecord, session: SessionRecord) {
    try {
      const ch = await this.opts.channels.get(session.containerId);
      ch.send({ op: 'abort', id: rec.id });
    } catch {
      // the container is gone too: nothing left running
    }
    this.opts.logger.warn(
      { executionId: rec.id, sessionId: rec.sessionId, host: session.host, containerId: session.containerId, lostWorker: rec.workerId },
      'execution lost its worker',
    );
    await this.endWithoutRunning(
      rec,
      'worker_lost',
      'WorkerLost',
      'the worker running this execution stopped mid-run; what it started was stopped and it was not run again',
      session.owner,
    );
  }

  private async endWithoutRunning(rec: ExecutionRecord, cause: Execution['cause'], name: string, value: string, owner?: string) {
    const now = Date.now();
    Object.assign(rec, {
      status: 'failed',
      cause,
      error: { name, value, traceback: `${name}: ${value}` },
      finishedAt: now,
    });
    await this.opts.executions.finish(rec);
    if (owner !== undefined) await this.opts.sessions.opts.limits?.executionFinished(owner, rec.sessionId, rec.id);
    await this.turns.advance(rec.sessionId, rec.seq);
    if (rec.startedAt) await this.opts.sessions.store.setStatusIfLive(rec.sessionId, 'ready');
    this.metrics.executions.inc({ status: 'failed', cause: cause ?? 'none' });
    this.opts.logger.info({ executionId: rec.id, sessionId: rec.sessionId, host: this.opts.host, status: 'failed', cause }, 'execution ended without running');
  }

  private async run(rec: ExecutionRecord, session: SessionRecord) {
    const { executions, sessions, logger } = this.opts;
    const metrics = this.metrics;
    const log = logger.child({ executionId: rec.id, sessionId: rec.sessionId, host: session.host, containerId: session.containerId });
    rec.status = 'running';
    rec.startedAt = Date.now();
    rec.workerId = this.opts.workerId;
    // One transaction: the record says `running` before the code is sent.
    const begin = executions.multi();
    executions.queueSave(begin, rec);
    sessions.store.queueSetStatusIfLive(begin, rec.sessionId, 'busy');
    executions.queueAppendEvent(begin, rec.id, { type: 'started', at: rec.startedAt });
    throwOnMultiError(await begin.exec());
    metrics.queueWaitSeconds.observe((rec.startedAt - rec.queuedAt) / 1000);

    // Events are persisted strictly in arrival order, without holding up the stream. Output chunks
    // that arrive together (within OUTPUT_BATCH_MS) share one transaction; those still pending when
    // the run ends ride along with the final record.
    let chain: Promise<unknown> = Promise.resolve();
    let pending: ExecutionEvent[] = [];
    let flushTimer: NodeJS.Timeout | null = null;
    const warn = (err: unknown) => log.warn({ err: errMsg(err) }, 'event not stored');
    const flush = () => {
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
      if (pending.length === 0) return;
      const batch = pending;
      pending = [];
      chain = chain.then(() => executions.appendEvents(rec.id, batch)).catch(warn);
    };
    const onEvent = (e: KernelEvent) => {
      if (e.ev === 'stdout' || e.ev === 'stderr') {
        const ev = this.takeOutput(rec, e);
        if (ev) pending.push(ev);
        flushTimer ??= setTimeout(flush, OUTPUT_BATCH_MS);
      } else if (e.ev === 'figure') {
        flush();
        chain = chain.then(() => this.onFigure(rec, e)).catch(warn);
      }
    };

    let done: DoneEvent | null = null;
    let lostReason: TerminationReason | null = null;
    try {
      const channel = await this.opts.channels.get(session.containerId);
      const answer = await channel.request<DoneEvent>(
        {
          op: 'exec',
          id: rec.id,
          code: rec.code,
          timeoutMs: rec.timeoutMs,
          maxOutputBytes: this.opts.maxOutputBytes,
          maxFigures: this.opts.maxFigures,
          maxFigurePixels: this.opts.maxFigurePixels,
          maxFigureBytes: this.opts.maxFigureBytes,
        },
        { onEvent, isLast: (e) => e.ev === 'done' || e.ev === 'error', timeoutMs: rec.timeoutMs + (this.opts.startupAllowanceMs ?? 60_000) },
      );
      if (answer.ev === 'error') {
        done = failedDone('RunnerError', String(answer.message ?? 'the runner refused the request'));
      } else done = answer;
    } catch (err) {
      if (!(err instanceof ChannelClosedError) && !isEngineMissing(err)) throw err;
      lostReason = await this.diagnoseContainer(session);
      log.warn({ reason: lostReason, err: errMsg(err) }, 'session container lost during a run');
    }
    // No event follows the end: what is still pending goes out with the final record, after the rest.
    if (flushTimer) clearTimeout(flushTimer);
    const tail = pending;
    pending = [];
    await chain;

    const finishedAt = Date.now();
    if (done) {
      Object.assign(rec, {
        status: done.status,
        result: done.result ?? null,
        error: done.error ?? null,
        restarted: !!done.restarted,
        cause: done.cause ?? null,
        usage: done.usage ?? null,
        stdoutTruncated: !!done.stdoutTruncated || rec.stdoutTruncated,
        stderrTruncated: !!done.stderrTruncated || rec.stderrTruncated,
        files: (done.files ?? []).map((f) => ({ path: f.path, size: f.size, mimeType: mimeTypeOf(f.path) })),
        notes: [...rec.notes, ...(done.notes ?? [])],
      });
      if ((rec.status as string) === 'failed' && !rec.cause && rec.error?.name === 'MemoryError') {
        // The kernel's RLIMIT_DATA is the session's memoryMb: the code ran out of memory, the session lives on.
        rec.cause = 'oom';
        rec.notes.push(`the code reached the session's memory limit (${session.limits.memoryMb} MiB); variables from earlier runs are kept`);
      }
    } else {
      const why = lostReason ?? deathReason(null);
      Object.assign(rec, {
        status: 'failed',
        cause: why === 'oom' ? 'oom' : 'session_terminated',
        error: {
          name: 'SessionTerminated',
          value: `the session container stopped during the run (${why}); the session has ended`,
          traceback: '',
        },
      });
    }
    rec.finishedAt = finishedAt;
    let next: unknown;
    if (done) {
      // One transaction, and the session is `ready` with its turn moved before the final record is
      // published: a caller who has the result can submit the next cell and it runs at once.
      const end = executions.multi();
      this.turns.queueAdvance(end, rec.sessionId, rec.seq);
      for (const ev of tail) executions.queueAppendEvent(end, rec.id, ev);
      sessions.store.queueSetStatusIfLive(end, rec.sessionId, 'ready');
      sessions.store.queueTouch(end, rec.sessionId, finishedAt);
      executions.queueFinish(end, rec);
      const res = await end.exec();
      throwOnMultiError(res);
      next = res![0][1];
    } else {
      // The session ends before the result is published: a caller who reads it and calls again gets the 410.
      await sessions.terminate(session, lostReason ?? deathReason(null)).catch((err) => log.error({ err: errMsg(err) }, 'terminate failed'));
      const end = executions.multi();
      this.turns.queueAdvance(end, rec.sessionId, rec.seq);
      for (const ev of tail) executions.queueAppendEvent(end, rec.id, ev);
      const res = await executions.queueFinish(end, rec).exec();
      throwOnMultiError(res);
      next = res![0][1];
    }
    await sessions.opts.limits?.executionFinished(session.owner, rec.sessionId, rec.id).catch(() => undefined);
    await this.turns.dispatch(rec.sessionId, next, session.host);
    metrics.runSeconds.observe((finishedAt - rec.startedAt!) / 1000);
    metrics.executions.inc({ status: rec.status, cause: rec.cause ?? 'none' });
    if (rec.cause === 'oom') metrics.oomKills.inc();
    if ((rec.status as string) === 'timed_out') metrics.timeouts.inc();
    log.info({ status: rec.status, cause: rec.cause ?? null, queueMs: rec.startedAt! - rec.queuedAt, runMs: finishedAt - rec.startedAt! }, 'execution finished');
  }

  /** Adds an output chunk to the record; returns the event to store, or null past the cap. */
  private takeOutput(rec: ExecutionRecord, e: KernelEvent): ExecutionEvent | null {
    const data = typeof e.data === 'string' ? e.data : '';
    // The supervisor caps output; this is a second fence in case it is subverted.
    const cur = e.ev === 'stdout' ? rec.stdout : rec.stderr;
    if (cur.length > this.opts.maxOutputBytes * 2) {
      if (e.ev === 'stdout') rec.stdoutTruncated = true;
      else rec.stderrTruncated = true;
      return null;
    }
    if (e.ev === 'stdout') rec.stdout += data;
    else rec.stderr += data;
    return { type: e.ev as 'stdout' | 'stderr', data };
  }

  private async onFigure(rec: ExecutionRecord, e: KernelEvent) {
    const { executions } = this.opts;
    const log = this.opts.logger.child({ executionId: rec.id, sessionId: rec.sessionId });
    if (typeof e.pngB64 !== 'string' || rec.figures.length >= this.opts.maxFigures) return;
    // base64 is 4/3 of the bytes: the length says whether it can fit before anything is decoded.
    if (e.pngB64.length > Math.ceil(this.opts.maxFigureBytes / 3) * 4) return this.dropFigure(rec, `a figure over ${this.opts.maxFigureBytes} bytes was dropped`);
    const png = Buffer.from(e.pngB64, 'base64');
    const checked = checkPng(png, this.opts.maxFigurePixels);
    if ('problem' in checked) {
      log.warn({ problem: checked.problem }, 'figure refused');
      return this.dropFigure(rec, `a figure was dropped: ${checked.problem}`);
    }
    const bytes = (this.figureBytes.get(rec) ?? 0) + png.length;
    if (bytes > MAX_FIGURE_BYTES_PER_EXECUTION) return this.dropFigure(rec, `figures past ${MAX_FIGURE_BYTES_PER_EXECUTION} bytes in one run were dropped`);
    if (!(await executions.reserveFigureBytes(rec.sessionId, png.length, this.opts.maxSessionFigureBytes))) {
      return this.dropFigure(rec, `the session's figures reached ${this.opts.maxSessionFigureBytes} bytes: this figure was dropped`);
    }
    this.figureBytes.set(rec, bytes);
    const figure = { id: uuidv4(), width: checked.width, height: checked.height };
    await executions.putFigure(rec.sessionId, figure.id, png);
    rec.figures.push(figure);
    await executions.appendEvent(rec.id, { type: 'figure', figure });
  }

  /** Says once per reason in the record's notes why a figure is missing. */
  private dropFigure(rec: ExecutionRecord, note: string) {
    if (!rec.notes.includes(note)) rec.notes.push(note);
  }


  /**
   * Why a container stopped answering: gone, out of memory, or exited. A container that is gone may
   * have been removed on purpose (DELETE, TTL, cleanup): the remover records why right after removing
   * it, so that reason wins when it shows up within a moment.
   */
  private async diagnoseContainer(session: SessionRecord): Promise<TerminationReason> {
    try {
      const info = await this.opts.sessions.runtime(session.host).inspect(session.containerId);
      if (!info) {
        for (let i = 0; i < 10; i++) {
          const rec = await this.opts.sessions.store.get(session.id);
          if (rec?.status === 'terminated') return rec.terminationReason ?? 'terminated';
          await sleep(100);
        }
      }
      return deathReason(info);
    } catch {
      return 'engine_unavailable';
    }
  }
}

function failedDone(name: string, value: string): DoneEvent {
  return { ev: 'done', ...failedOutcome(name, value), status: 'failed', files: [] };
}

function isEngineMissing(err: unknown): boolean {
  const status = (err as { statusCode?: number })?.statusCode;
  return status === 404 || status === 409;
}
