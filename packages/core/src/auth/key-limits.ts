import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ApiKey } from './api-keys';
import { RateLimitedError } from '../errors/errors';
import { defineScripts } from '../infra/redis-scripts';
import { Keys } from '../infra/keys';
import type { Caller } from './caller';
import type { SessionStore } from '../sessions/session-store';
import { errMsg } from '../infra/err-msg';

export interface OwnerLimits {
  /** Live sessions at once; null = no limit. */
  maxSessions: number | null;
  /** Executions submitted in any 60 s; null = no limit. */
  executionsPerMinute: number | null;
}

export interface KeyLimitsOptions {
  redis: Redis;
  namespace: string;
  store: SessionStore;
  keys: ApiKey[];
  defaults: OwnerLimits;
  logger?: Logger;
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
    return {
      maxSessions: key?.maxSessions ?? this.opts.defaults.maxSessions,
      executionsPerMinute: key?.executionsPerMinute ?? this.opts.defaults.executionsPerMinute,
    };
  }

  /** A slot for one more live session, or a 429 naming the cap, with Retry-After = the owner's soonest expiry. */
  async reserveSession(caller: Caller): Promise<SessionSlot | null> {
    const max = caller.owner === '*' ? null : this.limitsFor(caller.owner).maxSessions;
    if (noLimit(max)) return null;
    const key = this.k.ownerSessions(caller.owner);
    const token = `${PENDING}${randomUUID()}`;
    const take = async () => (await this.opts.redis.sbKeyReserveSession(key, max!, Date.now(), token)) === 1;
    if (!(await take())) {
      const soonest = await this.prune(key);
      if (!(await take())) {
        const retryAfter = soonest === null ? 60 : Math.max(1, Math.ceil((soonest - Date.now()) / 1000));
        throw new RateLimitedError(
          `API key "${caller.owner}" already has ${max} live session(s), its limit; delete one (DELETE /v1/sessions/{id}) or wait for one to expire`,
          retryAfter,
          { limit: 'sessions', max },
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
          .exec()
          .catch((err) => this.opts.logger?.warn({ err: errMsg(err), owner: caller.owner }, 'session slot not committed'));
      },
      release: async () => {
        await redis.zrem(key, token).catch(() => undefined);
      },
    };
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
  private async prune(key: string): Promise<number | null> {
    const redis = this.opts.redis;
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
      if (!rec || rec.status === 'terminated') drop.push(ids[i]);
      else soonest = soonest === null ? rec.expiresAt : Math.min(soonest, rec.expiresAt);
    });
    if (drop.length) await redis.zrem(key, ...drop);
    return soonest;
  }
}
