import type { ChainableCommander, Redis } from 'ioredis';
import { Keys } from '../infra/keys';
import { pendingOutcome, type ExecutionOutcome, type ExecutionStatus } from '../contract/schemas';
import { throwOnMultiError } from '../sessions/session-store';

export interface StoredFigure {
  id: string;
  width: number;
  height: number;
}

export interface StoredFile {
  path: string;
  size: number;
  mimeType: string;
}

/** An execution as kept in Redis: its outcome plus what the API shows as URLs and ISO dates, made at read time. */
export interface ExecutionRecord extends ExecutionOutcome {
  id: string;
  sessionId: string;
  seq: number;
  code: string;
  timeoutMs: number;
  stdout: string;
  stderr: string;
  figures: StoredFigure[];
  files: StoredFile[];
  queuedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  workerId: string | null;
}

export type ExecutionEvent =
  | { type: 'started'; at: number }
  | { type: 'stdout' | 'stderr'; data: string }
  | { type: 'figure'; figure: StoredFigure }
  | { type: 'done'; status: ExecutionStatus };

export interface ExecutionStoreOptions {
  redis: Redis;
  namespace: string;
  /** How long records, event logs and figures outlive their session at most. */
  retentionSeconds: number;
}

export function newExecutionRecord(p: { id: string; sessionId: string; seq: number; code: string; timeoutMs: number; now?: number }): ExecutionRecord {
  return {
    id: p.id,
    sessionId: p.sessionId,
    seq: p.seq,
    code: p.code,
    timeoutMs: p.timeoutMs,
    stdout: '',
    stderr: '',
    figures: [],
    files: [],
    queuedAt: p.now ?? Date.now(),
    startedAt: null,
    finishedAt: null,
    workerId: null,
    ...pendingOutcome(),
  };
}

/** Execution records, their event logs (for streaming and late readers) and figure bytes. */
export class ExecutionStore {
  readonly keys: Keys;
  private readonly redis: Redis;
  private readonly retention: number;

  constructor(opts: ExecutionStoreOptions) {
    this.redis = opts.redis;
    this.keys = new Keys(opts.namespace);
    this.retention = opts.retentionSeconds;
  }

  async create(rec: ExecutionRecord): Promise<void> {
    await this.queueCreate(this.redis.multi(), rec).exec().then(throwOnMultiError);
  }

  queueCreate(m: ChainableCommander, rec: ExecutionRecord): ChainableCommander {
    return m
      .set(this.keys.execution(rec.id), JSON.stringify(rec), 'EX', this.retention)
      .rpush(this.keys.sessionExecutions(rec.sessionId), rec.id)
      .expire(this.keys.sessionExecutions(rec.sessionId), this.retention)
      .hset(this.keys.sessionSeqs(rec.sessionId), String(rec.seq), rec.id)
      .expire(this.keys.sessionSeqs(rec.sessionId), this.retention);
  }

  async save(rec: ExecutionRecord): Promise<void> {
    await this.redis.set(this.keys.execution(rec.id), JSON.stringify(rec), 'EX', this.retention);
  }

  /** A transaction on this store's connection, for `queue*` calls of several stores to share one round trip. */
  multi(): ChainableCommander {
    return this.redis.multi();
  }

  queueSave(m: ChainableCommander, rec: ExecutionRecord): ChainableCommander {
    return m.set(this.keys.execution(rec.id), JSON.stringify(rec), 'EX', this.retention);
  }

  queueAppendEvent(m: ChainableCommander, executionId: string, ev: ExecutionEvent): ChainableCommander {
    const key = this.keys.executionEvents(executionId);
    // The type rides along so a waiter for the end can skip reading the record on every chunk.
    return m
      .xadd(key, '*', 'e', JSON.stringify(ev))
      .expire(key, this.retention)
      .publish(this.keys.eventsChannel(), `${executionId}:${ev.type}`);
  }

  /** The final record and its `done` event, then the notification. */
  queueFinish(m: ChainableCommander, rec: ExecutionRecord): ChainableCommander {
    this.queueSave(m, rec);
    return this.queueAppendEvent(m, rec.id, { type: 'done', status: rec.status });
  }

  async get(id: string): Promise<ExecutionRecord | null> {
    const raw = await this.redis.get(this.keys.execution(id));
    return raw ? (JSON.parse(raw) as ExecutionRecord) : null;
  }

  async idForSeq(sessionId: string, seq: number): Promise<string | null> {
    return this.redis.hget(this.keys.sessionSeqs(sessionId), String(seq));
  }

  /** Removes a record that never reached the queue, so nothing orphaned is left. */
  async discard(rec: ExecutionRecord): Promise<void> {
    await this.redis
      .multi()
      .del(this.keys.execution(rec.id))
      .lrem(this.keys.sessionExecutions(rec.sessionId), 0, rec.id)
      .hdel(this.keys.sessionSeqs(rec.sessionId), String(rec.seq))
      .exec()
      .then(throwOnMultiError);
  }

  async listForSession(sessionId: string, limit = 50): Promise<ExecutionRecord[]> {
    const ids = await this.redis.lrange(this.keys.sessionExecutions(sessionId), -limit, -1);
    if (!ids.length) return [];
    const raws = await this.redis.mget(ids.map((id) => this.keys.execution(id)));
    return raws.filter((r): r is string => !!r).map((r) => JSON.parse(r) as ExecutionRecord);
  }

  async appendEvent(executionId: string, ev: ExecutionEvent): Promise<string> {
    const res = await this.queueAppendEvent(this.redis.multi(), executionId, ev).exec();
    throwOnMultiError(res);
    return res![0][1] as string;
  }

  /** Several events in one transaction, in order. */
  async appendEvents(executionId: string, evs: ExecutionEvent[]): Promise<void> {
    const m = this.redis.multi();
    for (const ev of evs) this.queueAppendEvent(m, executionId, ev);
    throwOnMultiError(await m.exec());
  }

  /** Saves the final record and its `done` event in one round trip, then notifies listeners. */
  async finish(rec: ExecutionRecord): Promise<void> {
    await this.queueFinish(this.redis.multi(), rec).exec().then(throwOnMultiError);
  }

  /** Events after `afterId`, oldest first; at most `limit` of them when given. */
  async readEvents(executionId: string, afterId = '-', limit?: number): Promise<{ id: string; event: ExecutionEvent }[]> {
    const start = afterId === '-' ? '-' : `(${afterId}`;
    const key = this.keys.executionEvents(executionId);
    const rows = limit === undefined ? await this.redis.xrange(key, start, '+') : await this.redis.xrange(key, start, '+', 'COUNT', limit);
    return rows.map(([id, fields]) => ({ id, event: JSON.parse(fields[1]) as ExecutionEvent }));
  }

  async putFigure(sessionId: string, figureId: string, png: Buffer): Promise<void> {
    await this.redis
      .multi()
      .set(this.keys.figure(figureId), png, 'EX', this.retention)
      .sadd(this.keys.sessionFigures(sessionId), figureId)
      .expire(this.keys.sessionFigures(sessionId), this.retention)
      .exec()
      .then(throwOnMultiError);
  }

  /** Deletes a session's execution records and event logs (its outputs): what a DELETE leaves is the tombstone alone. */
  async dropSessionOutputs(sessionId: string): Promise<number> {
    const ids = await this.redis.lrange(this.keys.sessionExecutions(sessionId), 0, -1);
    const keys = [...ids.flatMap((id) => [this.keys.execution(id), this.keys.executionEvents(id)]), this.keys.sessionExecutions(sessionId)];
    return this.redis.del(...keys);
  }

  /** Counts `bytes` against the session's figure budget; false (and nothing counted) when they do not fit. */
  async reserveFigureBytes(sessionId: string, bytes: number, max: number): Promise<boolean> {
    const key = this.keys.sessionFigureBytes(sessionId);
    const [[, total]] = (await this.redis.multi().incrby(key, bytes).expire(key, this.retention).exec()) as [[null, number], unknown];
    if (total <= max) return true;
    await this.redis.decrby(key, bytes);
    return false;
  }

  /** With `sessionId`, only a figure that session made (so a figure id never opens another tenant's figure). */
  async getFigure(figureId: string, sessionId?: string): Promise<Buffer | null> {
    if (sessionId !== undefined && !(await this.redis.sismember(this.keys.sessionFigures(sessionId), figureId))) return null;
    return this.redis.getBuffer(this.keys.figure(figureId));
  }

  /** Deletes what a session leaves behind: figure bytes now; records lapse on their own. */
  async dropSessionData(sessionId: string): Promise<number> {
    const figs = await this.redis.smembers(this.keys.sessionFigures(sessionId));
    const keys = [...figs.map((f) => this.keys.figure(f)), this.keys.sessionFigures(sessionId), this.keys.sessionFigureBytes(sessionId)];
    return this.redis.del(...keys);
  }
}
