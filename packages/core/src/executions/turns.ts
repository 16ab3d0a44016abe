import { setTimeout as sleep } from 'node:timers/promises';
import type { ChainableCommander } from 'ioredis';
import type { ExecutionQueues } from './execution-queue';
import type { ExecutionRecord, ExecutionStore } from './execution-store';
import { TERMINAL_STATUSES } from '../contract/schemas';
import type { SessionStore } from '../sessions/session-store';

/** A predecessor that has not moved the turn for this long is checked for being dead. */
const DEAD_PREDECESSOR_CHECK_MS = 2000;

export interface SessionTurnsOptions {
  store: SessionStore;
  executions: ExecutionStore;
  queues: ExecutionQueues;
  host: string;
}

// Whether the execution with seq ARGV[1] may enter the worker queue now (its turn has come).
// Runs in the same transaction that records its seq, so either this or the predecessor's ADVANCE
// sees it: exactly one of them queues it.
const IS_DUE = `
local t = tonumber(redis.call('HGET', KEYS[1], 'turn') or '0')
if t == 0 or t >= tonumber(ARGV[1]) then return 1 end
return 0`;

// Moves the turn past seq ARGV[1] and returns the id of the execution whose turn it now is, if it
// was already submitted (nil when the turn had moved on already: someone else queued that one).
const ADVANCE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local seq = tonumber(ARGV[1])
local t = tonumber(redis.call('HGET', KEYS[1], 'turn') or '0')
if t > seq then return false end
redis.call('HSET', KEYS[1], 'turn', seq + 1)
return redis.call('HGET', KEYS[2], tostring(seq + 1))`;

/**
 * Per-session ordering: each execution gets a `seq` when it is submitted, and the session hash
 * carries the `turn` (the seq allowed to run). Executions of one session run in submission order,
 * whichever worker picked them up.
 *
 * Waiting for a turn takes no worker capacity: an execution enters its host's worker queue only
 * when its turn has come, either at submission (`queueIsDue`) or when its predecessor ends and
 * moves the turn (`advance` / `queueAdvance` + `dispatch`). Until then it is only a record.
 */
export class SessionTurns {
  constructor(private readonly opts: SessionTurnsOptions) {}

  /** Queued on the submission's transaction, after its seq is recorded: its result is 1 when the execution is due now. */
  queueIsDue(m: ChainableCommander, sessionId: string, seq: number): ChainableCommander {
    return m.eval(IS_DUE, 1, this.opts.store.keys.session(sessionId), seq);
  }

  /** Queued on a finishing run's transaction: its result is the id of the execution to dispatch next, or null. */
  queueAdvance(m: ChainableCommander, sessionId: string, seq: number): ChainableCommander {
    const k = this.opts.store.keys;
    return m.eval(ADVANCE, 2, k.session(sessionId), k.sessionSeqs(sessionId), seq);
  }

  /** Moves the turn past `seq` and puts the next execution, if already submitted, on the worker queue. */
  async advance(sessionId: string, seq: number, host = this.opts.host): Promise<void> {
    const k = this.opts.store.keys;
    const next = (await this.opts.executions.multi().eval(ADVANCE, 2, k.session(sessionId), k.sessionSeqs(sessionId), seq).exec())?.[0];
    if (next && !next[0]) await this.dispatch(sessionId, next[1], host);
  }

  /** Puts a due execution on its host's worker queue (the result of `queueAdvance`, when it names one). */
  async dispatch(sessionId: string, next: unknown, host = this.opts.host): Promise<void> {
    if (typeof next !== 'string' || !next) return;
    await this.opts.queues.add(host, { executionId: next, sessionId });
  }

  /** Resolves once it is `rec`'s turn (moving it past predecessors that can never finish). */
  async waitFor(rec: Pick<ExecutionRecord, 'sessionId' | 'seq'>): Promise<void> {
    const started = Date.now();
    let delay = 1;
    for (;;) {
      const turn = await this.opts.store.turn(rec.sessionId);
      if (isMyTurn(turn, rec.seq)) return;
      if (Date.now() - started > DEAD_PREDECESSOR_CHECK_MS) await this.skipDeadPredecessor(rec.sessionId, turn);
      await sleep(delay);
      delay = Math.min(delay * 2, 25);
    }
  }

  /** A predecessor whose record or job is gone can never advance the turn itself. */
  private async skipDeadPredecessor(sessionId: string, turn: number) {
    const predId = await this.opts.executions.idForSeq(sessionId, turn);
    const pred = predId ? await this.opts.executions.get(predId) : null;
    let dead = !pred || TERMINAL_STATUSES.has(pred.status);
    if (!dead && pred && pred.status === 'queued') {
      const state = await this.opts.queues.forHost(this.opts.host).getJobState(pred.id);
      dead = state === 'unknown' || state === 'failed' || state === 'completed';
    }
    if (dead) await this.advance(sessionId, turn);
  }
}

/** Turn 0 means the session hash is gone (the run then fails on its own); otherwise wait for our seq. */
export function isMyTurn(turn: number, seq: number): boolean {
  return turn >= seq || turn === 0;
}
