import { setTimeout as sleep } from 'node:timers/promises';
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

/**
 * Per-session ordering: each execution gets a `seq` when it is submitted, and the session hash
 * carries the `turn` (the seq allowed to run). Executions of one session run in submission order,
 * whichever worker picked them up.
 */
export class SessionTurns {
  constructor(private readonly opts: SessionTurnsOptions) {}

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
    if (dead) await this.opts.store.advanceTurn(sessionId, turn);
  }
}

/** Turn 0 means the session hash is gone (the run then fails on its own); otherwise wait for our seq. */
export function isMyTurn(turn: number, seq: number): boolean {
  return turn >= seq || turn === 0;
}
