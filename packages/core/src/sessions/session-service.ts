import { v4 as uuidv4 } from 'uuid';
import type { TerminationReason } from '../errors/termination-reason';
import type { Logger } from 'pino';
import type { ContainerRuntime } from '../runtime/container-runtime';
import { NotFoundError, SessionGoneError, UnavailableError, ValidationError } from '../errors/errors';
import { engineMemoryMb } from '../runtime/docker-runtime';
import type { HostBudget, HostReservation } from './host-budget';
import type { ExecutionStore } from '../executions/execution-store';
import type { KeyLimits } from '../auth/key-limits';
import type { Caller } from '../auth/caller';
import { Labels } from '../runtime/labels';
import { disabledMetrics, type Metrics } from '../infra/metrics';
import { DEFAULT_LIMITS, type CreateSessionBody, type Limits, type OnIdle } from '../contract/schemas';
import type { ListCursor, SessionRecord, SessionStore } from './session-store';
import { errMsg } from '../infra/err-msg';

export interface SessionServiceOptions {
  store: SessionStore;
  executions: ExecutionStore;
  /** One runtime per Docker host, by host name. */
  runtimes: Map<string, ContainerRuntime>;
  capacities: Map<string, number>;
  namespace: string;
  image: string;
  ociRuntime: string;
  defaultTtlSeconds: number;
  logger: Logger;
  metrics?: Metrics;
  /** Hands out a pre-started container for default limits, when a warm pool runs. */
  claimWarm?: (host: string) => Promise<{ sessionId: string; containerId: string } | null>;
  /** Called after a session is terminated, e.g. to archive its files first (see `beforeTerminate`). */
  beforeTerminate?: (rec: SessionRecord, reason: TerminationReason, opts: TerminateOptions) => Promise<void>;
  /** Extra fields for the 410 of a terminated session, e.g. that its files can still be restored. */
  goneDetails?: (rec: SessionRecord) => Promise<Record<string, unknown> | null>;
  /** What a session does at its idle TTL unless its create request says (default "destroy"). */
  onIdle?: OnIdle;
  /** Hibernation (issue 17): saves a session's state and files, then removes its container; false when it was used meanwhile (it stays live). */
  hibernate?: (rec: SessionRecord) => Promise<boolean>;
  /** Makes a hibernated session live again (new container, same id); returns the live record. */
  wake?: (rec: SessionRecord) => Promise<SessionRecord>;
  /** Per-API-key caps (live sessions here, executions per minute in ExecutionService.submit). */
  limits?: KeyLimits;
  /** Operator ceilings of one session's limits (`SESSIONBOX_MAX_*`). */
  maxLimits?: Limits;
  /** Engine memory each host has committed; a host never takes more than it can hold. */
  hostBudget?: HostBudget;
}

export interface TerminateOptions {
  /** Archive the working directory first so a new session can restore it (`DELETE ?keep=files`). */
  keepFiles?: boolean;
  /** Delete its executions' records and event logs now, rather than letting them lapse (`DELETE` without `keep=outputs`). */
  dropOutputs?: boolean;
  /** A throwaway session (drop-ins): its record and executions go at once, no tombstone is kept. */
  forget?: boolean;
}

/** Where a waking session goes (`SessionService.wakeContainer`). */
export interface WakeContainer {
  host: string;
  containerId: string;
  /** The container's session-id label when it is not the session's own (a warm-pool container), else null. */
  containerLabel: string | null;
  /** After the record is live again: the host's memory and the key's slot now count this session. */
  commit(): Promise<void>;
  /** The wake failed: container removed, alias, memory and slot given back. */
  abandon(): Promise<void>;
}

export interface CreateExtra {
  restoredFrom?: string | null;
  /** The container gets the engine's bridge network (the dify-sandbox drop-in, when the operator allows it). */
  network?: boolean;
}


export function sessionContainerName(namespace: string, sessionId: string) {
  return `sessionbox-${namespace}-${sessionId}`;
}

export function sessionLabels(p: { namespace: string; sessionId: string; host: string; now: number; expiresAt: number; pool?: boolean }) {
  return {
    [Labels.managed]: 'true',
    [Labels.namespace]: p.namespace,
    [Labels.sessionId]: p.sessionId,
    [Labels.host]: p.host,
    [Labels.createdAt]: new Date(p.now).toISOString(),
    [Labels.expiresAt]: new Date(p.expiresAt).toISOString(),
    ...(p.pool ? { [Labels.pool]: 'true' } : {}),
  };
}

const sameLimits = (a: Limits, b: Limits) =>
  a.memoryMb === b.memoryMb && a.cpus === b.cpus && a.pids === b.pids && a.diskMb === b.diskMb;

/** Where a session is born and where it dies: container and record always move together. */
export class SessionService {
  /** The process's metrics, or counters nobody reads when none were given. */
  private readonly metrics: Metrics;

  constructor(readonly opts: SessionServiceOptions) {
    this.metrics = opts.metrics ?? disabledMetrics();
  }

  get store() {
    return this.opts.store;
  }

  runtime(host: string): ContainerRuntime {
    const rt = this.opts.runtimes.get(host);
    if (!rt) throw new UnavailableError('host_unknown', `no Docker host named ${host} is configured`);
    return rt;
  }

  /** Least-loaded host with room that is not marked down. */
  async placeSession(): Promise<string> {
    const [best] = await this.hostsByLoad();
    if (!best) throw new UnavailableError('capacity_exhausted', 'every Docker host is full or down; try again later');
    return best;
  }

  /** Hosts with room that are not marked down, least loaded first. */
  private async hostsByLoad(): Promise<string[]> {
    // Every host's two reads in one round trip.
    const reads = await Promise.all(
      [...this.opts.capacities].map(async ([host, capacity]) => {
        const [down, live] = await Promise.all([this.opts.store.isHostDown(host), this.opts.store.liveCount(host)]);
        return { host, capacity, down, live };
      }),
    );
    return reads
      .filter((r) => !r.down && r.live < r.capacity)
      .sort((a, b) => a.live / a.capacity - b.live / b.capacity)
      .map((r) => r.host);
  }

  /** The least-loaded host that still has the engine memory this session's limits need. */
  private async placeWithin(limits: Limits): Promise<{ host: string; reservation: HostReservation | null }> {
    const hosts = await this.hostsByLoad();
    if (hosts.length === 0) throw new UnavailableError('capacity_exhausted', 'every Docker host is full or down; try again later');
    const budget = this.opts.hostBudget;
    if (!budget) return { host: hosts[0], reservation: null };
    const mb = engineMemoryMb(limits);
    let largest = 0;
    for (const host of hosts) {
      const reservation = await budget.reserve(host, mb);
      if (reservation) return { host, reservation };
      largest = Math.max(largest, await budget.hostMemoryMb(host));
    }
    if (mb > largest) {
      throw new ValidationError(
        `limits: memoryMb + diskMb (+${mb - limits.memoryMb - limits.diskMb} MiB for the runtime) = ${mb} MiB is more than any Docker host has (${largest} MiB)`,
        { field: 'limits.memoryMb', limit: 'host_memory' },
      );
    }
    throw new UnavailableError('capacity_exhausted', `no Docker host has ${mb} MiB of memory left for this session's limits (host_memory); try again later or ask for less`);
  }

  /** 400 naming the first limit over its operator ceiling. */
  private checkCeilings(limits: Limits) {
    const max = this.opts.maxLimits;
    if (!max) return;
    for (const name of ['memoryMb', 'diskMb', 'cpus', 'pids'] as const) {
      if (limits[name] > max[name]) {
        throw new ValidationError(`limits.${name}: ${limits[name]} is over this server's ceiling of ${max[name]}`, {
          field: `limits.${name}`,
          limit: name,
          max: max[name],
        });
      }
    }
  }

  async create(body: CreateSessionBody, caller: Caller, extra: CreateExtra = {}): Promise<SessionRecord> {
    this.checkCeilings({ ...DEFAULT_LIMITS, ...(body.limits ?? {}) });
    const slot = this.opts.limits ? await this.opts.limits.reserveSession(caller, { ...DEFAULT_LIMITS, ...(body.limits ?? {}) }) : null;
    let rec: SessionRecord;
    try {
      rec = await this.createContainerAndRecord(body, caller, extra);
    } catch (err) {
      await slot?.release();
      throw err;
    }
    await slot?.commit(rec.id);
    return rec;
  }

  private async createContainerAndRecord(body: CreateSessionBody, caller: Caller, extra: CreateExtra): Promise<SessionRecord> {
    const started = process.hrtime.bigint();
    const now = Date.now();
    const limits: Limits = { ...DEFAULT_LIMITS, ...(body.limits ?? {}) };
    const ttlSeconds = body.ttlSeconds ?? this.opts.defaultTtlSeconds;
    const expiresAt = now + ttlSeconds * 1000;
    const { host, reservation } = await this.placeWithin(limits);
    try {
      const rec = await this.createOn(host, limits, body, caller, extra, { now, ttlSeconds, expiresAt, started });
      await reservation?.commit(rec.id);
      return rec;
    } catch (err) {
      await reservation?.release();
      throw err;
    }
  }

  private async createOn(
    host: string,
    limits: Limits,
    body: CreateSessionBody,
    caller: Caller,
    extra: CreateExtra,
    t: { now: number; ttlSeconds: number; expiresAt: number; started: bigint },
  ): Promise<SessionRecord> {
    const { now, ttlSeconds, expiresAt, started } = t;
    const runtime = this.runtime(host);

    // Warm containers have no network: a session that needs one is always made cold.
    const warm = sameLimits(limits, DEFAULT_LIMITS) && !extra.network && this.opts.claimWarm ? await this.opts.claimWarm(host) : null;
    const id = warm?.sessionId ?? uuidv4();
    const containerId =
      warm?.containerId ??
      (await runtime.createSessionContainer({
        name: sessionContainerName(this.opts.namespace, id),
        image: this.opts.image,
        labels: sessionLabels({ namespace: this.opts.namespace, sessionId: id, host, now, expiresAt }),
        limits,
        runtime: this.opts.ociRuntime,
        network: extra.network,
        // Born claimed, so at normal CPU weight; it answers at once and imports on first use.
        lazyImports: true,
      }));

    const rec: SessionRecord = {
      id,
      status: 'ready',
      host,
      containerId,
      owner: caller.owner,
      createdAt: now,
      lastActiveAt: now,
      expiresAt,
      ttlSeconds,
      limits,
      metadata: body.metadata ?? {},
      terminatedAt: null,
      terminationReason: null,
      restoredFrom: extra.restoredFrom ?? null,
      onIdle: body.onIdle ?? this.opts.onIdle ?? 'destroy',
    };
    try {
      await this.opts.store.create(rec);
    } catch (err) {
      await runtime.remove(containerId).catch(() => undefined);
      throw new UnavailableError('store_unavailable', `could not record the session: ${errMsg(err)}`);
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.metrics.sessionCreateSeconds.observe({ host, warm: warm ? 'true' : 'false' }, seconds);
    this.opts.logger.info({ sessionId: id, host, containerId, warm: !!warm }, 'session created');
    return rec;
  }

  /** The record, whatever its state; 404 when unknown or owned by another caller. */
  async find(id: string, caller: Caller): Promise<SessionRecord> {
    const rec = await this.opts.store.get(id);
    if (!rec || (caller.owner !== '*' && rec.owner !== caller.owner)) throw new NotFoundError('session', id);
    return rec;
  }

  /**
   * A live session (410 once terminated). `use`: the call is something a user does with the session
   * (runs code, writes or deletes files, calls a tool), which moves lastActiveAt and so its idle TTL;
   * reads, listings, SSE and figure downloads do not, so a polling dashboard keeps nothing alive.
   * `wake`: a hibernated session is woken (a new container with its state) before it is returned;
   * false for reads that need no container, which get the hibernated record as it is.
   */
  async getLive(id: string, caller: Caller, use = false, wake = true): Promise<SessionRecord> {
    const touch = use;
    let rec = await this.find(id, caller);
    if (rec.status === 'terminated') throw await this.gone(rec);
    if (rec.status === 'hibernated') {
      if (!wake) return rec;
      if (!this.opts.wake) throw new UnavailableError('wake_unavailable', `session ${id} is hibernated and this process cannot wake it`);
      rec = await this.opts.wake(rec);
    }
    if (touch && (await this.opts.store.touch(id))) {
      const now = Date.now();
      rec.lastActiveAt = now;
      rec.expiresAt = now + rec.ttlSeconds * 1000;
    }
    return rec;
  }

  goneError(rec: SessionRecord): SessionGoneError {
    return new SessionGoneError(rec.id, rec.terminationReason ?? 'terminated', {
      terminatedAt: rec.terminatedAt ? new Date(rec.terminatedAt).toISOString() : null,
    });
  }

  /** `goneError` plus what the `goneDetails` hook adds (never fails: the 410 matters more). */
  async gone(rec: SessionRecord): Promise<SessionGoneError> {
    const base = this.goneError(rec);
    const extra = this.opts.goneDetails ? await this.opts.goneDetails(rec).catch(() => null) : null;
    return extra ? new SessionGoneError(rec.id, rec.terminationReason ?? 'terminated', { ...base.details, ...extra }) : base;
  }

  /**
   * The caller's sessions (the admin's: everyone's), newest first, read from the owner's own index.
   * With `limit`, one page and the cursor of the next (null at the end); without, all of them.
   */
  async list(
    caller: Caller,
    filter: { status?: string; metadata?: Record<string, string> } = {},
    page: { cursor?: ListCursor | null; limit?: number } = {},
  ): Promise<{ sessions: SessionRecord[]; nextCursor: ListCursor | null }> {
    const limit = page.limit ?? Number.MAX_SAFE_INTEGER;
    const matches = (r: SessionRecord) =>
      (!filter.status || r.status === filter.status) && Object.entries(filter.metadata ?? {}).every(([k, v]) => r.metadata[k] === v);
    const out: SessionRecord[] = [];
    let after = page.cursor ?? null;
    for (;;) {
      const { entries, more } = await this.opts.store.page(caller.owner, after, Math.min(500, Math.max(limit + 1, 50)));
      for (const { cursor, rec } of entries) {
        after = cursor;
        if (!rec || !matches(rec)) continue;
        if (out.length === limit) return { sessions: out, nextCursor: { createdAt: out[limit - 1].createdAt, id: out[limit - 1].id } };
        out.push(rec);
      }
      if (!more) return { sessions: out, nextCursor: null };
    }
  }

  /** At the idle TTL: hibernate when the session asked for it and this process can, else terminate. */
  async idleOut(rec: SessionRecord): Promise<'hibernated' | 'kept' | 'expired'> {
    if (rec.onIdle === 'hibernate' && rec.status !== 'hibernated' && this.opts.hibernate) {
      try {
        return (await this.opts.hibernate(rec)) ? 'hibernated' : 'kept';
      } catch (err) {
        // A session that cannot be saved ends as it would have without hibernation (its files are still archived).
        this.opts.logger.warn({ sessionId: rec.id, err: errMsg(err) }, 'could not hibernate; the session expires instead');
      }
    }
    await this.terminate(rec, 'expired');
    return 'expired';
  }

  /**
   * A container for a hibernated session to wake into: its key's live-session slot is taken first
   * (429 over the cap, with nothing made), then it is placed like a create. A default-limit session
   * takes a warm-pool container when one is listed: its label names the id it was pooled under, so
   * an alias (`Keys.containerAlias`) maps that id to this session, lapsing after `aliasTtlMs` unless
   * the wake completes (`SessionStore.wake` keeps it). `commit` once the record is live again;
   * `abandon` removes the container and gives everything back.
   */
  async wakeContainer(rec: SessionRecord, aliasTtlMs: number): Promise<WakeContainer> {
    const slot = this.opts.limits ? await this.opts.limits.reserveSession({ owner: rec.owner }, rec.limits) : null;
    let placed: { host: string; reservation: HostReservation | null } | null = null;
    let claimed: { sessionId: string; containerId: string } | null = null;
    try {
      placed = await this.placeWithin(rec.limits);
      const { host, reservation } = placed;
      const now = Date.now();
      claimed = sameLimits(rec.limits, DEFAULT_LIMITS) && this.opts.claimWarm ? await this.opts.claimWarm(host) : null;
      if (claimed) await this.opts.store.aliasContainer(claimed.sessionId, rec.id, aliasTtlMs);
      const containerId =
        claimed?.containerId ??
        (await this.runtime(host).createSessionContainer({
          name: sessionContainerName(this.opts.namespace, rec.id),
          image: this.opts.image,
          labels: sessionLabels({ namespace: this.opts.namespace, sessionId: rec.id, host, now, expiresAt: now + rec.ttlSeconds * 1000 }),
          limits: rec.limits,
          runtime: this.opts.ociRuntime,
          // The saved state imports what it needs as it loads (a session with no pandas skips its import).
          lazyImports: true,
        }));
      const labelId = claimed?.sessionId ?? null;
      this.opts.logger.debug({ sessionId: rec.id, host, containerId, warm: !!claimed }, 'container for a wake');
      return {
        host,
        containerId,
        containerLabel: labelId,
        commit: async () => {
          await Promise.all([reservation?.commit(rec.id), slot?.commit(rec.id)]);
        },
        abandon: async () => {
          await this.runtime(host).remove(containerId).catch(() => undefined);
          if (labelId) await this.opts.store.dropContainerAlias(labelId, rec.id).catch(() => undefined);
          await Promise.all([reservation?.release(), slot?.release()]);
        },
      };
    } catch (err) {
      if (claimed && placed) await this.runtime(placed.host).remove(claimed.containerId).catch(() => undefined);
      await Promise.all([placed?.reservation?.release(), slot?.release()]);
      throw err;
    }
  }

  /** Removes the container first, so it is gone by the time the caller hears back. */
  async terminate(rec: SessionRecord, reason: TerminationReason, opts: TerminateOptions = {}): Promise<boolean> {
    const started = process.hrtime.bigint();
    if (this.opts.beforeTerminate) {
      await this.opts.beforeTerminate(rec, reason, opts).catch((err) =>
        this.opts.logger.warn({ sessionId: rec.id, host: rec.host, containerId: rec.containerId, err: errMsg(err) }, 'before-terminate hook failed'),
      );
    }
    await this.runtime(rec.host).remove(rec.containerId);
    const changed = await this.opts.store.terminate(rec, reason);
    await this.opts.executions.dropSessionData(rec.id);
    if (opts.dropOutputs || opts.forget) await this.opts.executions.dropSessionOutputs(rec.id);
    if (opts.forget) await this.opts.store.forget(rec);
    this.metrics.containerRemoveSeconds.observe({ host: rec.host }, Number(process.hrtime.bigint() - started) / 1e9);
    if (changed) {
      this.metrics.sessionsTerminated.inc({ reason });
      this.opts.logger.info({ sessionId: rec.id, host: rec.host, containerId: rec.containerId, reason }, 'session terminated');
    }
    return changed;
  }

  async delete(id: string, caller: Caller, reason: TerminationReason = 'deleted', opts: TerminateOptions = {}): Promise<void> {
    const rec = await this.find(id, caller);
    if (rec.status === 'terminated') throw await this.gone(rec);
    await this.terminate(rec, reason, opts);
  }
}
