import type { ChainableCommander, Redis } from 'ioredis';
import { isTerminationReason, type TerminationReason } from '../errors/termination-reason';
import { defineScripts } from '../infra/redis-scripts';
import { Keys } from '../infra/keys';
import type { Limits, OnIdle, Session, SessionStatus } from '../contract/schemas';

export interface SessionRecord {
  id: string;
  status: SessionStatus;
  host: string;
  containerId: string;
  owner: string;
  createdAt: number;
  lastActiveAt: number;
  expiresAt: number;
  ttlSeconds: number;
  limits: Limits;
  metadata: Record<string, string>;
  terminatedAt: number | null;
  terminationReason: TerminationReason | null;
  restoredFrom: string | null;
  onIdle?: OnIdle;
  hibernatedAt?: number | null;
  wakeUntil?: number | null;
  /**
   * The `sessionbox.session-id` label of its container when that names another id: a wake took a
   * warm-pool container (made under an id of its own). `Keys.containerAlias(label)` maps it back.
   */
  containerLabel?: string | null;
  /** Set on the record `getLive` returns when that call woke the session: what could not come back. */
  woke?: { notes: string[] };
}

/** Where a listing page ends: the last record given (newest-first order is createdAt, then id, descending). */
export interface ListCursor {
  createdAt: number;
  id: string;
}

export interface SessionStoreOptions {
  redis: Redis;
  namespace: string;
  tombstoneSeconds: number;
}

/** Session records in Redis: one hash each, plus the creation and expiry indexes. */
export class SessionStore {
  readonly keys: Keys;
  private readonly redis: Redis;
  private readonly tombstoneMs: number;

  constructor(opts: SessionStoreOptions) {
    this.redis = defineScripts(opts.redis);
    this.keys = new Keys(opts.namespace);
    this.tombstoneMs = opts.tombstoneSeconds * 1000;
  }

  async create(rec: SessionRecord): Promise<void> {
    const k = this.keys;
    await this.redis
      .multi()
      .hset(k.session(rec.id), serialize(rec))
      .hset(k.session(rec.id), 'seq', 0, 'turn', 1)
      .zadd(k.sessions(), rec.createdAt, rec.id)
      .zadd(k.ownerIndex(rec.owner), rec.createdAt, rec.id)
      .zadd(k.expiry(), rec.expiresAt, rec.id)
      .sadd(k.hostSessions(rec.host), rec.id)
      .exec()
      .then(throwOnMultiError);
  }

  async get(id: string): Promise<SessionRecord | null> {
    const h = await this.redis.hgetall(this.keys.session(id));
    return h && h.id ? deserialize(h) : null;
  }

  /** The record and its execution turn (kept in the same hash), in one read. */
  async getWithTurn(id: string): Promise<{ rec: SessionRecord | null; turn: number }> {
    const h = await this.redis.hgetall(this.keys.session(id));
    return { rec: h && h.id ? deserialize(h) : null, turn: Number(h?.turn ?? 0) };
  }

  async getMany(ids: string[]): Promise<(SessionRecord | null)[]> {
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(this.keys.session(id));
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, h]) => (!err && h && (h as Record<string, string>).id ? deserialize(h as Record<string, string>) : null));
  }

  /** Newest first; records whose tombstone has lapsed are dropped from the index as they are met. */
  async list(): Promise<SessionRecord[]> {
    const ids = await this.redis.zrevrange(this.keys.sessions(), 0, -1);
    const recs = await this.getMany(ids);
    const stale = ids.filter((_, i) => !recs[i]);
    if (stale.length) await this.redis.zrem(this.keys.sessions(), ...stale);
    return recs.filter((r): r is SessionRecord => r !== null);
  }

  /**
   * Up to `count` entries of an owner's index (`*`: everyone's), newest first, strictly after
   * `after` in that order, with their records (null: the tombstone lapsed, and the entry is dropped).
   * `more`: the index may hold entries past these.
   */
  async page(owner: string, after: ListCursor | null, count: number): Promise<{ entries: { cursor: ListCursor; rec: SessionRecord | null }[]; more: boolean }> {
    const key = owner === '*' ? this.keys.sessions() : this.keys.ownerIndex(owner);
    // Members that share the cursor's score come in reverse lex order: those >= its id were given already.
    const ties = after ? 64 : 0;
    const raw = await this.redis.zrevrangebyscore(key, after ? String(after.createdAt) : '+inf', '-inf', 'WITHSCORES', 'LIMIT', 0, count + ties);
    const found: ListCursor[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const c = { id: raw[i], createdAt: Number(raw[i + 1]) };
      if (!after || c.createdAt < after.createdAt || c.id < after.id) found.push(c);
    }
    const taken = found.slice(0, count);
    const recs = await this.getMany(taken.map((c) => c.id));
    const stale = taken.filter((_, i) => !recs[i]).map((c) => c.id);
    if (stale.length) await this.redis.zrem(key, ...stale);
    return { entries: taken.map((cursor, i) => ({ cursor, rec: recs[i] })), more: found.length > count || raw.length / 2 === count + ties };
  }

  /** Drops a terminated session's record and indexes at once (a throwaway session leaves no tombstone). */
  async forget(rec: Pick<SessionRecord, 'id' | 'host' | 'owner'>): Promise<void> {
    const k = this.keys;
    await this.redis
      .multi()
      .del(k.session(rec.id), k.sessionExecutions(rec.id), k.sessionSeqs(rec.id), k.sessionFigures(rec.id), k.sessionFigureBytes(rec.id))
      .zrem(k.sessions(), rec.id)
      .zrem(k.ownerIndex(rec.owner), rec.id)
      .zrem(k.expiry(), rec.id)
      .srem(k.hostSessions(rec.host), rec.id)
      .exec()
      .then(throwOnMultiError);
  }

  async touch(id: string, now = Date.now()): Promise<boolean> {
    return (await this.redis.sbSessionTouch(this.keys.session(id), this.keys.expiry(), now, id)) === 1;
  }

  async setStatusIfLive(id: string, status: 'ready' | 'busy'): Promise<boolean> {
    return (await this.redis.sbSessionSetStatusIfLive(this.keys.session(id), status)) === 1;
  }

  // The same updates queued on a caller's transaction (e.g. `ExecutionStore.multi()`), to share its round trip.
  queueTouch(m: ChainableCommander, id: string, now = Date.now()): ChainableCommander {
    return m.sbSessionTouch(this.keys.session(id), this.keys.expiry(), now, id);
  }

  queueSetStatusIfLive(m: ChainableCommander, id: string, status: 'ready' | 'busy'): ChainableCommander {
    return m.sbSessionSetStatusIfLive(this.keys.session(id), status);
  }

  queueAdvanceTurn(m: ChainableCommander, id: string, seq: number): ChainableCommander {
    return m.sbSessionAdvanceTurn(this.keys.session(id), seq);
  }

  async expiredIds(now = Date.now(), limit = 200): Promise<string[]> {
    return this.redis.zrangebyscore(this.keys.expiry(), '-inf', now, 'LIMIT', 0, limit);
  }

  async claimExpired(id: string, now = Date.now()): Promise<boolean> {
    return (await this.redis.sbSessionClaimExpired(this.keys.session(id), this.keys.expiry(), id, now)) === 1;
  }

  /** Marks the record terminated and keeps it as a tombstone (for 410s) until it lapses. */
  async terminate(rec: Pick<SessionRecord, 'id' | 'host' | 'containerLabel'>, reason: TerminationReason, now = Date.now()): Promise<boolean> {
    const k = this.keys;
    const r = await this.redis.sbSessionTerminate(
      k.session(rec.id),
      k.expiry(),
      k.hostSessions(rec.host),
      // Its container's alias goes with it (only while it still names this session).
      k.containerAlias(rec.containerLabel || rec.id),
      rec.id,
      now,
      reason,
      this.tombstoneMs,
    );
    return r === 1;
  }

  /**
   * Names `sessionId` as the session of the container labelled `labelId`. With `ttlMs` (a wake under
   * way) the alias lapses unless `wake` makes it permanent, so a wake that dies leaves none behind.
   */
  async aliasContainer(labelId: string, sessionId: string, ttlMs: number): Promise<void> {
    await this.redis.set(this.keys.containerAlias(labelId), sessionId, 'PX', ttlMs);
  }

  async dropContainerAlias(labelId: string, sessionId: string): Promise<void> {
    const key = this.keys.containerAlias(labelId);
    if ((await this.redis.get(key)) === sessionId) await this.redis.del(key);
  }

  /** The session a container labelled `labelId` serves: its alias's, else the label's own id. */
  async sessionForLabel(labelId: string): Promise<string> {
    return (await this.redis.get(this.keys.containerAlias(labelId))) ?? labelId;
  }

  /** `sessionForLabel` for many labels in one round trip (null: no alias). */
  async aliasesOf(labelIds: string[]): Promise<Map<string, string>> {
    if (labelIds.length === 0) return new Map();
    const got = await this.redis.mget(...labelIds.map((l) => this.keys.containerAlias(l)));
    return new Map(labelIds.flatMap((l, i) => (got[i] ? [[l, got[i]!] as const] : [])));
  }

  /** Puts a session back in the expiry index at its recorded expiry, e.g. after an end that failed (so the next reaper pass tries again). */
  async requeueExpiry(id: string): Promise<boolean> {
    return (await this.redis.sbSessionRequeueExpiry(this.keys.session(id), this.keys.expiry(), id)) === 1;
  }

  /** Container gone, state saved (issue 17): off the host's live set, ending for good at `wakeUntil` unless woken. */
  async hibernate(rec: Pick<SessionRecord, 'id' | 'host' | 'containerLabel'>, now: number, wakeUntil: number): Promise<void> {
    const k = this.keys;
    const m = this.redis.multi();
    if (rec.containerLabel) m.del(k.containerAlias(rec.containerLabel));
    await m
      .hset(k.session(rec.id), 'status', 'hibernated', 'hibernatedAt', now, 'wakeUntil', wakeUntil, 'expiresAt', wakeUntil, 'containerLabel', '')
      .zadd(k.expiry(), wakeUntil, rec.id)
      .srem(k.hostSessions(rec.host), rec.id)
      .exec()
      .then(throwOnMultiError);
  }

  /**
   * Live again in a new container; `notes` wait for the next execution (`takeWakeNotes`).
   * `containerLabel`: the container's label id when it is not `rec.id` (a warm-pool container); its alias is kept for good.
   */
  async wake(rec: SessionRecord, host: string, containerId: string, notes: string[], now = Date.now(), containerLabel: string | null = null): Promise<void> {
    const k = this.keys;
    const exp = now + rec.ttlSeconds * 1000;
    const m = this.redis.multi();
    if (containerLabel) m.set(k.containerAlias(containerLabel), rec.id);
    await m
      .hset(k.session(rec.id), 'status', 'ready', 'host', host, 'containerId', containerId, 'hibernatedAt', '', 'wakeUntil', '',
        'lastActiveAt', now, 'expiresAt', exp, 'wokeNotes', JSON.stringify(notes), 'containerLabel', containerLabel ?? '')
      .zadd(k.expiry(), exp, rec.id)
      .sadd(k.hostSessions(host), rec.id)
      .exec()
      .then(throwOnMultiError);
  }

  /** What the last wake could not restore, once: null when the session did not just wake. */
  async takeWakeNotes(id: string): Promise<string[] | null> {
    const res = await this.redis.multi().hget(this.keys.session(id), 'wokeNotes').hdel(this.keys.session(id), 'wokeNotes').exec();
    const raw = res?.[0]?.[1];
    return typeof raw === 'string' && raw ? (JSON.parse(raw) as string[]) : null;
  }

  /** Removes the record and its indexes outright (used when a create is rolled back). */
  async purge(rec: Pick<SessionRecord, 'id' | 'host'>): Promise<void> {
    const k = this.keys;
    await this.redis
      .multi()
      .del(k.session(rec.id), k.sessionExecutions(rec.id), k.sessionFigures(rec.id), k.sessionFigureBytes(rec.id))
      .zrem(k.sessions(), rec.id)
      .zrem(k.expiry(), rec.id)
      .srem(k.hostSessions(rec.host), rec.id)
      .exec()
      .then(throwOnMultiError);
  }

  async isHostDown(host: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.hostDown(host))) === 1;
  }

  async setHostDown(host: string, down: boolean): Promise<void> {
    if (down) await this.redis.set(this.keys.hostDown(host), String(Date.now()));
    else await this.redis.del(this.keys.hostDown(host));
  }

  async liveIds(host: string): Promise<string[]> {
    return this.redis.smembers(this.keys.hostSessions(host));
  }

  async liveCount(host: string): Promise<number> {
    return this.redis.scard(this.keys.hostSessions(host));
  }

  /** Next sequence number for an execution of this session (order of submission). */
  async nextSeq(id: string): Promise<number> {
    return this.redis.hincrby(this.keys.session(id), 'seq', 1);
  }

  async turn(id: string): Promise<number> {
    return Number((await this.redis.hget(this.keys.session(id), 'turn')) ?? 0);
  }

  /** Lets the execution after `seq` run; a no-op when the turn has already moved on. */
  async advanceTurn(id: string, seq: number): Promise<void> {
    await this.redis.sbSessionAdvanceTurn(this.keys.session(id), seq);
  }
}

export function toApiSession(rec: SessionRecord): Session {
  const iso = (ms: number) => new Date(ms).toISOString();
  return {
    id: rec.id,
    status: rec.status,
    createdAt: iso(rec.createdAt),
    lastActiveAt: iso(rec.lastActiveAt),
    expiresAt: iso(rec.expiresAt),
    ttlSeconds: rec.ttlSeconds,
    limits: rec.limits,
    metadata: rec.metadata,
    host: rec.host,
    terminatedAt: rec.terminatedAt ? iso(rec.terminatedAt) : null,
    terminationReason: rec.terminationReason,
    ...(rec.restoredFrom ? { restoredFrom: rec.restoredFrom, memoryRestored: false } : {}),
    ...(rec.onIdle ? { onIdle: rec.onIdle } : {}),
    ...(rec.status === 'hibernated' ? { hibernatedAt: iso(rec.hibernatedAt ?? 0), wakeUntil: iso(rec.wakeUntil ?? 0) } : {}),
  };
}

function serialize(rec: SessionRecord): Record<string, string> {
  return {
    id: rec.id,
    status: rec.status,
    host: rec.host,
    containerId: rec.containerId,
    owner: rec.owner,
    createdAt: String(rec.createdAt),
    lastActiveAt: String(rec.lastActiveAt),
    expiresAt: String(rec.expiresAt),
    ttlSeconds: String(rec.ttlSeconds),
    limits: JSON.stringify(rec.limits),
    metadata: JSON.stringify(rec.metadata),
    terminatedAt: rec.terminatedAt ? String(rec.terminatedAt) : '',
    terminationReason: rec.terminationReason ?? '',
    restoredFrom: rec.restoredFrom ?? '',
    onIdle: rec.onIdle ?? '',
    hibernatedAt: rec.hibernatedAt ? String(rec.hibernatedAt) : '',
    wakeUntil: rec.wakeUntil ? String(rec.wakeUntil) : '',
    containerLabel: rec.containerLabel ?? '',
  };
}

function deserialize(h: Record<string, string>): SessionRecord {
  return {
    id: h.id,
    status: h.status as SessionStatus,
    host: h.host,
    containerId: h.containerId,
    owner: h.owner ?? '',
    createdAt: Number(h.createdAt),
    lastActiveAt: Number(h.lastActiveAt),
    expiresAt: Number(h.expiresAt),
    ttlSeconds: Number(h.ttlSeconds),
    limits: JSON.parse(h.limits),
    metadata: JSON.parse(h.metadata || '{}'),
    terminatedAt: h.terminatedAt ? Number(h.terminatedAt) : null,
    terminationReason: storedReason(h.terminationReason),
    restoredFrom: h.restoredFrom || null,
    ...(h.onIdle ? { onIdle: h.onIdle as OnIdle } : {}),
    hibernatedAt: h.hibernatedAt ? Number(h.hibernatedAt) : null,
    wakeUntil: h.wakeUntil ? Number(h.wakeUntil) : null,
    containerLabel: h.containerLabel || null,
  };
}

export function throwOnMultiError(res: [Error | null, unknown][] | null): void {
  if (!res) throw new Error('redis transaction aborted');
  for (const [err] of res) if (err) throw err;
}

/** A record written before the vocabulary was one (`container_gone`), or with no reason, still reads as one. */
function storedReason(raw: string | undefined): TerminationReason | null {
  if (!raw) return null;
  if (raw === 'container_gone') return 'container_removed';
  return isTerminationReason(raw) ? raw : 'terminated';
}
