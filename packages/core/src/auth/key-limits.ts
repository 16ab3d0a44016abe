import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ApiKey } from './api-keys';
import { RateLimitedError } from '../errors/errors';
import { defineScripts } from '../infra/redis-scripts';
import { Keys } from '../infra/keys';
import type { Caller } from './caller';
import { throwOnMultiError, type SessionStore } from '../sessions/session-store';
import { errMsg } from '../infra/err-msg';

export interface OwnerLimits {
  /** Live sessions at once; null = no limit. */
  maxSessions: number | null;
  /** Executions submitted in any 60 s; null = no limit. */
  executionsPerMinute: number | null;
  /** Sessions with code in flight (running or waiting their turn) at once; null = no limit. */
  maxRunningExecutions?: number | null;
  /** Executions submitted and not yet finished; null = no limit. */
  maxQueuedExecutions?: number | null;
  /** memoryMb + diskMb over the live sessions; null = no budget. */
  maxMemoryMb?: number | null;
  /** cpus over the live sessions; null = no budget. */
  maxCpus?: number | null;
  /** Figure bytes over the key's sessions (each session has its own cap too); null = no budget. */
  maxFigureBytes?: number | null;
  /** Archives the key holds at once; a new one evicts the oldest; null = no limit. */
  maxArchives?: number | null;
  /** Bytes of the key's archives; a new one evicts the oldest; null = no budget. */
  maxArchiveBytes?: number | null;
  /** How long the key's archives are kept (SESSIONBOX_ARCHIVE_SECONDS unless the key says). */
  archiveSeconds?: number;
  /** Requests open at once on one API process; null = no limit. */
  maxConnections?: number | null;
}

/** What one session holds against its key's budgets. */
export interface SessionResources {
  memoryMb: number;
  diskMb: number;
  cpus: number;
}

export interface KeyLimitsOptions {
  redis: Redis;
  namespace: string;
  store: SessionStore;
  keys: ApiKey[];
  defaults: OwnerLimits;
  logger?: Logger;
  /** Whether an execution is still in flight (for pruning the in-flight counts). */
  executionState?: (executionId: string) => Promise<'inflight' | 'finished' | 'gone'>;
}

/** A counted slot for a session being made: `commit` once it exists, `release` when it was not made. */
export interface SessionSlot {
  commit(sessionId: string): Promise<void>;
  release(): Promise<void>;
}

const WINDOW_MS = 60_000;
/** A pending slot older than this belongs to a create that crashed midway. */
const PENDING_STALE_MS = 10 * 60_000;
const PENDING = 'pending:';

const noLimit = (n: number | null | undefined) => n === null || n === undefined || n <= 0;
/** A limit as the Lua scripts read it: -1 for none (null, unset or 0). */
const asCap = (n: number | null | undefined): number => (noLimit(n) ? -1 : n!);

/**
 * Per-API-key limits, enforced by the core services themselves (SessionService.create,
 * ExecutionService.submit), so REST, tools, MCP and drop-ins all count against the same numbers.
 * The admin caller (`*`) is not limited.
 *
 * Live sessions are counted in a per-owner zset: a slot is taken before the container is made and
 * becomes the session id once it exists. Sessions that end are not removed one by one; when the
 * count reaches the cap, the members are checked against their records and the ended ones dropped.
 */
export class KeyLimits {
  private readonly k: Keys;
  private readonly byName: Map<string, ApiKey>;

  constructor(readonly opts: KeyLimitsOptions) {
    defineScripts(opts.redis);
    this.k = new Keys(opts.namespace);
    this.byName = new Map((opts.keys ?? []).map((key) => [key.name, key]));
  }

  limitsFor(owner: string): OwnerLimits {
    const key = this.byName.get(owner);
    const d = this.opts.defaults;
    return {
      ...d,
      maxSessions: key?.maxSessions ?? d.maxSessions,
      executionsPerMinute: key?.executionsPerMinute ?? d.executionsPerMinute,
      maxFigureBytes: key?.maxFigureBytes ?? d.maxFigureBytes,
      maxArchives: key?.maxArchives ?? d.maxArchives,
      maxArchiveBytes: key?.maxArchiveBytes ?? d.maxArchiveBytes,
      archiveSeconds: key?.archiveSeconds ?? d.archiveSeconds,
      maxConnections: key?.maxConnections ?? d.maxConnections,
    };
  }

  /** A budget as a number the Lua scripts read: -1 for none (null, unset or 0), and none for the admin. */
  budget(owner: string, name: 'maxFigureBytes' | 'maxArchives' | 'maxArchiveBytes' | 'maxConnections'): number {
    if (owner === '*') return -1;
    return asCap(this.limitsFor(owner)[name]);
  }

  /**
   * A slot for one more live session holding `res`, or a 429 naming the cap or budget it would pass,
   * with Retry-After = the owner's soonest expiry.
   */
  async reserveSession(caller: Caller, res: SessionResources): Promise<SessionSlot | null> {
    if (caller.owner === '*') return null;
    const lim = this.limitsFor(caller.owner);
    const [max, maxMem, maxCpus] = [asCap(lim.maxSessions), asCap(lim.maxMemoryMb), asCap(lim.maxCpus)];
    if (max < 0 && maxMem < 0 && maxCpus < 0) return null;
    const key = this.k.ownerSessions(caller.owner);
    const resKey = this.k.ownerResources(caller.owner);
    const token = `${PENDING}${randomUUID()}`;
    const mem = res.memoryMb + res.diskMb;
    const take = async () => String(await this.opts.redis.sbKeyReserveSession(key, resKey, max, Date.now(), token, maxMem, maxCpus, mem, res.cpus));
    let refused = await take();
    if (refused !== 'ok') {
      const soonest = await this.prune(caller.owner);
      refused = await take();
      if (refused !== 'ok') {
        const retryAfter = soonest === null ? 60 : Math.max(1, Math.ceil((soonest - Date.now()) / 1000));
        const what =
          refused === 'sessions'
            ? `already has ${max} live session(s), its limit`
            : refused === 'memory_mb'
              ? `would hold more than its memory budget of ${maxMem} MiB (memoryMb + diskMb over its live sessions) with this one (${mem} MiB)`
              : `would hold more than its budget of ${maxCpus} CPUs over its live sessions with this one (${res.cpus})`;
        throw new RateLimitedError(
          `API key "${caller.owner}" ${what}; delete a session (DELETE /v1/sessions/{id}) or wait for one to expire`,
          retryAfter,
          { limit: refused, max: refused === 'sessions' ? max : refused === 'memory_mb' ? maxMem : maxCpus },
        );
      }
    }
    const redis = this.opts.redis;
    return {
      commit: async (sessionId) => {
        // Best effort: the session exists either way; a lost commit leaves a pending slot that ages out.
        await redis
          .multi()
          .zadd(key, Date.now(), sessionId)
          .zrem(key, token)
          .hset(resKey, sessionId, `${mem} ${res.cpus}`)
          .hdel(resKey, token)
          .exec()
          .catch((err) => this.opts.logger?.warn({ err: errMsg(err), owner: caller.owner }, 'session slot not committed'));
      },
      release: async () => {
        await redis.multi().zrem(key, token).hdel(resKey, token).exec().catch(() => undefined);
      },
    };
  }

  /** Gives back a session's slot and what it held against the budgets (it hibernated: no container). */
  async releaseSession(owner: string, sessionId: string): Promise<void> {
    if (owner === '*') return;
    await this.opts.redis
      .multi()
      .zrem(this.k.ownerSessions(owner), sessionId)
      .hdel(this.k.ownerResources(owner), sessionId)
      .exec()
      .then(throwOnMultiError);
  }

  /**
   * Counts an execution as in flight for its owner, or throws 429: the owner already has its cap of
   * unfinished executions (`queued_executions`), or its cap of sessions with code in flight
   * (`running_executions`) and this session is not one of them. `executionFinished` gives it back.
   */
  async admitExecution(caller: Caller, sessionId: string, executionId: string): Promise<void> {
    if (caller.owner === '*') return;
    const lim = this.limitsFor(caller.owner);
    const [maxQueued, maxRunning] = [asCap(lim.maxQueuedExecutions), asCap(lim.maxRunningExecutions)];
    if (maxQueued < 0 && maxRunning < 0) return;
    const key = this.k.ownerInflight(caller.owner);
    const admit = async () => String(await this.opts.redis.sbKeyAdmitExecution(key, sessionId, executionId, maxQueued, maxRunning, Date.now()));
    let refused = await admit();
    if (refused === 'ok') return;
    await this.pruneInflight(key);
    refused = await admit();
    if (refused === 'ok') return;
    const message =
      refused === 'queued'
        ? `API key "${caller.owner}" has ${maxQueued} execution(s) not yet finished, its limit; wait for some to finish`
        : `API key "${caller.owner}" has code in flight in ${maxRunning} session(s), its limit; wait for one to finish or run this in one of them`;
    throw new RateLimitedError(message, 1, { limit: refused === 'queued' ? 'queued_executions' : 'running_executions', max: refused === 'queued' ? maxQueued : maxRunning });
  }

  /** Gives back an execution's place in its owner's in-flight set (idempotent). */
  async executionFinished(owner: string, sessionId: string, executionId: string): Promise<void> {
    if (owner === '*') return;
    await this.opts.redis.zrem(this.k.ownerInflight(owner), `${sessionId}:${executionId}`);
  }

  /** Drops in-flight members whose execution has ended or is gone (a finish that was never counted back). */
  private async pruneInflight(key: string) {
    const members = await this.opts.redis.zrange(key, 0, -1);
    if (members.length === 0 || !this.opts.executionState) return;
    const states = await Promise.all(members.map((m) => this.opts.executionState!(m.slice(m.indexOf(':') + 1))));
    const drop = members.filter((_, i) => states[i] === 'gone' || states[i] === 'finished');
    if (drop.length) await this.opts.redis.zrem(key, ...drop);
  }

  /** Counts one execution against the owner's per-minute budget, or throws 429 with the wait until a slot frees. */
  async countExecution(caller: Caller): Promise<void> {
    const max = caller.owner === '*' ? null : this.limitsFor(caller.owner).executionsPerMinute;
    if (noLimit(max)) return;
    const now = Date.now();
    const waitMs = Number(
      await this.opts.redis.sbKeyCountExecution(this.k.ownerExecutions(caller.owner), now, WINDOW_MS, max!, `${now}:${randomUUID()}`),
    );
    if (waitMs >= 0) {
      throw new RateLimitedError(
        `API key "${caller.owner}" has submitted ${max} execution(s) in the last minute, its limit; retry later`,
        Math.max(1, Math.ceil(waitMs / 1000)),
        { limit: 'executions_per_minute', max },
      );
    }
  }

  /** Drops members whose session has ended (or whose create crashed); returns the soonest expiry of those left. */
  private async prune(owner: string): Promise<number | null> {
    const redis = this.opts.redis;
    const key = this.k.ownerSessions(owner);
    const raw = await redis.zrange(key, 0, -1, 'WITHSCORES');
    const now = Date.now();
    const ids: string[] = [];
    const drop: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const member = raw[i];
      if (!member.startsWith(PENDING)) ids.push(member);
      else if (Number(raw[i + 1]) < now - PENDING_STALE_MS) drop.push(member);
    }
    const recs = await this.opts.store.getMany(ids);
    let soonest: number | null = null;
    recs.forEach((rec, i) => {
      // A hibernated session has no container: it holds no slot until it wakes (which takes one).
      if (!rec || rec.status === 'terminated' || rec.status === 'hibernated') drop.push(ids[i]);
      else soonest = soonest === null ? rec.expiresAt : Math.min(soonest, rec.expiresAt);
    });
    if (drop.length) {
      await redis
        .multi()
        .zrem(key, ...drop)
        .hdel(this.k.ownerResources(owner), ...drop)
        .exec();
    }
    return soonest;
  }
}
