import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ContainerInfo, ContainerRuntime } from '../runtime/container-runtime';
import type { ExecutionJobData } from '../executions/execution-queue';
import type { ExecutionStore } from '../executions/execution-store';
import { Keys } from '../infra/keys';
import { Labels } from '../runtime/labels';
import type { Metrics } from '../infra/metrics';
import type { SessionService } from '../sessions/session-service';
import {
  SessionInventory,
  containerBornAt,
  findPoolEntry,
  lookupContainer,
  mapConcurrent,
  sameContainer,
  type PoolListEntry,
} from './session-inventory';
import { throwOnMultiError, type SessionRecord } from '../sessions/session-store';

/**
 * What a cleanup pass can find:
 * - `expired`: live sessions past their idle TTL that no reaper ended (busy ones only once stuck);
 * - `orphan_container`: labelled containers no live record points at (and not listed in the warm pool);
 * - `dead_record`: live records whose container is missing or stopped;
 * - `leftover_data`: Redis data of sessions that are gone (execution records, event logs, figures,
 *   seq/exec lists, index entries, queued or failed jobs), and figures/index entries of tombstones;
 * - `all`: with `all: true`, every container of the namespace, whatever its state.
 */
export const CLEANUP_KINDS = ['expired', 'orphan_container', 'dead_record', 'leftover_data', 'all'] as const;
export type CleanupKind = (typeof CLEANUP_KINDS)[number];
export const RECONCILE_KINDS: CleanupKind[] = ['expired', 'orphan_container', 'dead_record', 'leftover_data'];

export const CleanupPlanOptions = z
  .object({
    /** Docker hosts whose containers and records the pass covers (default: every configured host). */
    hosts: z.array(z.string()).min(1).optional(),
    /** Containers and records younger than this are being born and are left alone. */
    graceMs: z.number().int().min(0).default(10_000),
    /** Only act on what has shown no sign of life for this long. */
    olderThanMs: z.number().int().min(0).optional(),
    /** Every container of the namespace (kind `all`), live or not. */
    all: z.boolean().default(false),
    kinds: z.array(z.enum(CLEANUP_KINDS)).optional(),
    /** A busy session past its TTL by more than this has lost its worker: reap it anyway. */
    stuckBusyMs: z.number().int().min(0).default(660_000),
  })
  .strict();
export type CleanupPlanOptions = z.input<typeof CleanupPlanOptions>;

export interface CleanupAction {
  kind: CleanupKind;
  sessionId: string | null;
  host: string | null;
  containerId: string | null;
  /** Why it is on the list, for people. */
  reason: string;
  /** The container carries `sessionbox.pool=true`. */
  pooled?: boolean;
  /** expired: busy far past its TTL (its worker is gone). */
  stuck?: boolean;
  /** Its warm-pool list entry, removed along with the container (`all` only). */
  poolEntry?: { key: string; raw: string };
  /** leftover_data: whether the session was gone or a tombstone when planned. */
  sessionState?: 'gone' | 'terminated';
  keys?: string[];
  index?: { key: string; member: string; type: 'zset' | 'set' }[];
  jobs?: { host: string; jobId: string }[];
}

export interface CleanupPlan {
  namespace: string;
  hosts: string[];
  plannedAt: number;
  all: boolean;
  actions: CleanupAction[];
  /** Things the pass could not judge (e.g. an engine down), for people. */
  warnings: string[];
  /** Set when Redis could not be read: then only `all` can act. */
  recordsError: string | null;
}

export interface KindSummary {
  found: number;
  removed: number;
  failed: number;
  skipped: number;
}

export type CleanupOutcome = 'removed' | 'failed' | 'skipped';

export interface CleanupSummary {
  namespace: string;
  kinds: Record<CleanupKind, KindSummary>;
  failures: { action: CleanupAction; error: string }[];
  skipped: { action: CleanupAction; why: string }[];
  durationMs: number;
}

export interface CleanupProgress {
  done: number;
  total: number;
  action: CleanupAction;
  outcome: CleanupOutcome;
}

export interface KillResult {
  id: string;
  /** `terminated` now, already `terminated` before, `not_found`, or `containers_only` when records were unreadable. */
  outcome: 'terminated' | 'already_terminated' | 'not_found' | 'containers_only' | 'failed';
  containersRemoved: number;
  purged: boolean;
  error?: string;
}

export interface CleanupOptions {
  sessions: SessionService;
  executions: ExecutionStore;
  redis: Redis;
  /** Why Redis cannot be used; then only containers are listed and `all` removes them by label. */
  redisError?: string | null;
  namespace: string;
  logger: Logger;
  metrics?: Metrics;
  /** Connection for the queues searched for jobs of gone sessions (default: a duplicate of `redis`, closed by `close()`). */
  queueConnection?: Redis;
  concurrency?: number;
}

const errMsg = (err: unknown) => (err as Error)?.message ?? String(err);
const JOB_STATES = ['wait', 'delayed', 'prioritized', 'failed'] as const;
const DEAD_RECORD_SETTLE_MS = 1000;

class Skip extends Error {}

/**
 * The one place that reclaims what crashes leave behind. It only ever touches containers carrying
 * this namespace's labels (found by label filter), leaves anything born within the grace period
 * alone, re-checks every action just before applying it, and treats "already gone" as success.
 */
export class Cleanup {
  readonly keys: Keys;
  readonly inventory: SessionInventory;
  private readonly queues = new Map<string, Queue<ExecutionJobData>>();
  private ownConnection: Redis | null = null;

  constructor(readonly opts: CleanupOptions) {
    this.keys = new Keys(opts.namespace);
    this.inventory = new SessionInventory({
      redis: opts.redis,
      redisError: opts.redisError,
      store: opts.sessions.store,
      executions: opts.executions,
      runtimes: opts.sessions.opts.runtimes,
      namespace: opts.namespace,
    });
  }

  private get redis() {
    return this.opts.redis;
  }

  private runtime(host: string): ContainerRuntime {
    return this.opts.sessions.runtime(host);
  }

  /** The host's execution queue, opened without writing its meta key (a dry run changes nothing). */
  private queue(host: string): Queue<ExecutionJobData> {
    let q = this.queues.get(host);
    if (!q) {
      const connection = this.opts.queueConnection ?? (this.ownConnection ??= this.redis.duplicate());
      q = new Queue<ExecutionJobData>(this.keys.queueName(host), { connection, prefix: this.keys.queuePrefix(), skipMetasUpdate: true });
      this.queues.set(host, q);
    }
    return q;
  }

  async close() {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
    await this.ownConnection?.quit().catch(() => this.ownConnection?.disconnect());
    this.ownConnection = null;
  }

  async plan(input: CleanupPlanOptions = {}): Promise<CleanupPlan> {
    const o = CleanupPlanOptions.parse(input);
    const hosts = o.hosts ?? this.inventory.hosts;
    const wanted = new Set<CleanupKind>(o.all ? [...(o.kinds ?? RECONCILE_KINDS), 'all'] : (o.kinds ?? RECONCILE_KINDS));
    const now = Date.now();
    const old = (t: number) => o.olderThanMs === undefined || now - t >= o.olderThanMs;
    const warnings: string[] = [];
    const actions: CleanupAction[] = [];
    let recordsError = this.opts.redisError ?? null;

    // Order matters: pool and records are read before containers are listed, so a session born
    // during the pass shows up as a young container (protected by the grace), never as a dead record.
    let pool: Map<string, PoolListEntry> | null = null;
    let scan: KeyScan | null = null;
    let records: Map<string, SessionRecord> | null = null;
    if (!recordsError) {
      try {
        try {
          pool = await this.inventory.readPool(hosts);
        } catch (err) {
          pool = null;
          warnings.push(`warm-pool list unreadable (${errMsg(err)}): pool containers are left alone`);
        }
        scan = await this.scanKeys();
        records = await this.inventory.readRecords(scan.sessionIds);
      } catch (err) {
        recordsError = errMsg(err);
        records = null;
      }
    }
    if (recordsError) warnings.push(`records could not be read (Redis: ${recordsError})`);
    const listed = await this.inventory.listContainers(hosts);
    for (const h of listed) if (h.error) warnings.push(`host ${h.host}: containers could not be listed (${h.error})`);
    const hostOk = new Set(listed.filter((h) => !h.error).map((h) => h.host));
    const containers = new Map<string, ContainerInfo & { host: string }>();
    for (const h of listed) for (const c of h.containers) containers.set(c.id, { ...c, host: h.host });

    const live = [...(records?.values() ?? [])].filter((r) => r.status !== 'terminated' && hosts.includes(r.host));
    const planned = new Set<string>();

    if (wanted.has('expired') && !o.all) {
      for (const rec of live) {
        if (rec.expiresAt > now) continue;
        if (rec.status === 'busy' && now - rec.expiresAt < o.stuckBusyMs) continue;
        if (!old(rec.lastActiveAt)) continue;
        planned.add(rec.id);
        actions.push({
          kind: 'expired',
          stuck: rec.status === 'busy',
          sessionId: rec.id,
          host: rec.host,
          containerId: rec.containerId,
          reason: `idle since ${new Date(rec.lastActiveAt).toISOString()}, expired ${fmtAgo(now - rec.expiresAt)} ago${rec.status === 'busy' ? ' (stuck busy)' : ''}`,
        });
      }
    }

    let unjudged = 0;
    for (const c of containers.values()) {
      const bornAt = containerBornAt(c);
      if (now - bornAt < o.graceMs || !old(bornAt)) continue;
      const sessionId = c.labels[Labels.sessionId] ?? null;
      const pooled = c.labels[Labels.pool] === 'true';
      const base = { sessionId, host: c.host, containerId: c.id, pooled };
      if (o.all) {
        const entry = findPoolEntry(pool, c.id, sessionId);
        actions.push({ kind: 'all', ...base, reason: `--all (${c.state})`, ...(entry ? { poolEntry: { key: entry.key, raw: entry.raw } } : {}) });
        continue;
      }
      if (!wanted.has('orphan_container')) continue;
      if (!records) {
        unjudged++;
        continue;
      }
      const rec = sessionId ? records.get(sessionId) : undefined;
      if (rec && rec.status !== 'terminated' && sameContainer(rec.containerId, c.id)) continue;
      if (findPoolEntry(pool, c.id, sessionId)) continue;
      if (pooled && !pool) continue;
      const reason = !sessionId
        ? 'no session-id label'
        : !rec
          ? 'no session record'
          : rec.status === 'terminated'
            ? `session terminated (${rec.terminationReason ?? 'unknown'})`
            : `session ${sessionId} uses container ${rec.containerId.slice(0, 12)}`;
      actions.push({ kind: 'orphan_container', ...base, reason: pooled ? `${reason}, not in the pool list` : reason });
    }
    if (unjudged) warnings.push(`${unjudged} container(s) not judged: without records an orphan cannot be told from a live session`);

    if (wanted.has('dead_record')) {
      for (const rec of live) {
        if (planned.has(rec.id) || !hostOk.has(rec.host)) continue;
        const c = lookupContainer(containers, rec.containerId);
        if (c && (c.running || c.state === 'paused')) continue;
        if (c && o.all) continue; // the `all` action of its container ends the record too
        if (now - rec.createdAt < o.graceMs || !old(rec.lastActiveAt)) continue;
        actions.push({
          kind: 'dead_record',
          sessionId: rec.id,
          host: rec.host,
          containerId: rec.containerId,
          reason: c ? `container ${c.state}` : 'container missing',
        });
      }
    }

    if (wanted.has('leftover_data') && records && scan) {
      try {
        actions.push(...(await this.planLeftovers(scan, records, hosts, now, o.olderThanMs)));
      } catch (err) {
        warnings.push(`leftover data not examined (${errMsg(err)})`);
      }
    }

    return { namespace: this.opts.namespace, hosts, plannedAt: now, all: o.all, actions, warnings, recordsError };
  }

  /** One SCAN over the namespace, sorted into the key families cleanup knows; others are never touched. */
  private async scanKeys(): Promise<KeyScan> {
    const p = escapeRe(this.keys.prefix);
    const re = {
      session: new RegExp(`^${p}session:([^:]+)$`),
      sessionPart: new RegExp(`^${p}session:([^:]+):(execs|seqs|figs)$`),
      exec: new RegExp(`^${p}exec:([^:]+)$`),
      execEvents: new RegExp(`^${p}exec:([^:]+):events$`),
      figure: new RegExp(`^${p}fig:([^:]+)$`),
      hostSet: new RegExp(`^${p}host:([^:]+):sessions$`),
    };
    const scan: KeyScan = { sessionIds: new Set(), sessionParts: new Map(), execs: new Set(), execEvents: new Set(), figures: new Set(), hostSets: new Set() };
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${this.keys.prefix}*`, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) {
        let m: RegExpExecArray | null;
        if ((m = re.session.exec(k))) scan.sessionIds.add(m[1]);
        else if ((m = re.sessionPart.exec(k))) {
          const parts = scan.sessionParts.get(m[1]) ?? new Set();
          parts.add(m[2] as 'execs' | 'seqs' | 'figs');
          scan.sessionParts.set(m[1], parts);
        } else if ((m = re.execEvents.exec(k))) scan.execEvents.add(m[1]);
        else if ((m = re.exec.exec(k))) scan.execs.add(m[1]);
        else if ((m = re.figure.exec(k))) scan.figures.add(m[1]);
        else if ((m = re.hostSet.exec(k))) scan.hostSets.add(m[1]);
      }
    } while (cursor !== '0');
    return scan;
  }

  private async planLeftovers(
    scan: KeyScan,
    records: Map<string, SessionRecord>,
    hosts: string[],
    now: number,
    olderThanMs: number | undefined,
  ): Promise<CleanupAction[]> {
    const k = this.keys;
    const groups = new Map<string | null, Required<Pick<CleanupAction, 'keys' | 'index' | 'jobs'>> & { lastSign: number }>();
    const group = (sid: string | null) => {
      let g = groups.get(sid);
      if (!g) groups.set(sid, (g = { keys: [], index: [], jobs: [], lastSign: 0 }));
      return g;
    };
    const state = (sid: string): 'live' | 'gone' | 'terminated' => {
      const r = records.get(sid);
      return !r ? 'gone' : r.status === 'terminated' ? 'terminated' : 'live';
    };

    // Per-session keys; a tombstone keeps its execution records (the API still serves them), not its figures.
    const figOwner = new Map<string, string>();
    for (const [sid, parts] of scan.sessionParts) {
      const st = state(sid);
      if (parts.has('figs')) {
        for (const f of await this.redis.smembers(k.sessionFigures(sid))) figOwner.set(f, sid);
      }
      if (st === 'live') continue;
      for (const part of parts) {
        if (st === 'terminated' && part !== 'figs') continue;
        group(sid).keys.push(part === 'execs' ? k.sessionExecutions(sid) : part === 'seqs' ? k.sessionSeqs(sid) : k.sessionFigures(sid));
      }
    }
    for (const fid of scan.figures) {
      const sid = figOwner.get(fid) ?? null;
      if (sid === null || state(sid) !== 'live') group(sid).keys.push(k.figure(fid));
    }

    // Execution records and event logs belong to the session named in the record.
    const execIds = [...new Set([...scan.execs, ...scan.execEvents])];
    for (let i = 0; i < execIds.length; i += 500) {
      const chunk = execIds.slice(i, i + 500);
      const raws = await this.redis.mget(chunk.map((id) => k.execution(id)));
      chunk.forEach((eid, j) => {
        let sid: string | null = null;
        let at = 0;
        try {
          const rec = raws[j] ? (JSON.parse(raws[j]!) as { sessionId?: string; queuedAt?: number; finishedAt?: number | null }) : null;
          sid = rec?.sessionId ?? null;
          at = Math.max(rec?.queuedAt ?? 0, rec?.finishedAt ?? 0);
        } catch {
          sid = null;
        }
        if (sid !== null && state(sid) !== 'gone') return;
        const g = group(sid);
        g.lastSign = Math.max(g.lastSign, at);
        if (scan.execs.has(eid)) g.keys.push(k.execution(eid));
        if (scan.execEvents.has(eid)) g.keys.push(k.executionEvents(eid));
      });
    }

    // Index entries that point at nothing (or at a tombstone, for the live-only indexes).
    for (const sid of await this.redis.zrange(k.sessions(), 0, -1)) {
      if (state(sid) === 'gone') group(sid).index.push({ key: k.sessions(), member: sid, type: 'zset' });
    }
    for (const sid of await this.redis.zrange(k.expiry(), 0, -1)) {
      if (state(sid) !== 'live') group(sid).index.push({ key: k.expiry(), member: sid, type: 'zset' });
    }
    for (const host of scan.hostSets) {
      for (const sid of await this.redis.smembers(k.hostSessions(host))) {
        if (state(sid) !== 'live') group(sid).index.push({ key: k.hostSessions(host), member: sid, type: 'set' });
      }
    }

    // Jobs of gone sessions: they can never run; jobs of tombstones are failed properly by the worker.
    for (const host of hosts) {
      const q = this.queue(host);
      for (let start = 0; ; start += 1000) {
        const jobs = await q.getJobs([...JOB_STATES], start, start + 999, true);
        for (const job of jobs) {
          const sid = (job?.data as { sessionId?: string } | undefined)?.sessionId;
          if (!job?.id || !sid || state(sid) !== 'gone') continue;
          const g = group(sid);
          g.jobs.push({ host, jobId: job.id });
          g.lastSign = Math.max(g.lastSign, job.finishedOn ?? job.timestamp ?? 0);
        }
        if (jobs.length < 1000) break;
      }
    }

    const actions: CleanupAction[] = [];
    for (const [sid, g] of groups) {
      if (!g.keys.length && !g.index.length && !g.jobs.length) continue;
      const rec = sid ? records.get(sid) : undefined;
      const lastSign = Math.max(g.lastSign, rec?.terminatedAt ?? 0);
      if (olderThanMs !== undefined && lastSign && now - lastSign < olderThanMs) continue;
      const what = [
        g.keys.length ? `${g.keys.length} key(s)` : '',
        g.index.length ? `${g.index.length} index entr${g.index.length === 1 ? 'y' : 'ies'}` : '',
        g.jobs.length ? `${g.jobs.length} job(s)` : '',
      ]
        .filter(Boolean)
        .join(', ');
      actions.push({
        kind: 'leftover_data',
        sessionId: sid,
        host: rec?.host ?? null,
        containerId: null,
        reason: `${sid === null ? 'unowned' : rec ? 'terminated session' : 'gone session'}: ${what}`,
        sessionState: rec ? 'terminated' : 'gone',
        keys: g.keys,
        index: g.index,
        jobs: g.jobs,
      });
    }
    return actions;
  }

  /** Carries out a plan (re-checking each action first); containers before data. */
  async apply(plan: CleanupPlan, onProgress?: (p: CleanupProgress) => void): Promise<CleanupSummary> {
    const started = Date.now();
    const kinds = Object.fromEntries(CLEANUP_KINDS.map((k) => [k, { found: 0, removed: 0, failed: 0, skipped: 0 }])) as Record<CleanupKind, KindSummary>;
    const failures: CleanupSummary['failures'] = [];
    const skipped: CleanupSummary['skipped'] = [];
    for (const a of plan.actions) kinds[a.kind].found++;
    const ordered = [...plan.actions.filter((a) => a.kind !== 'leftover_data'), ...plan.actions.filter((a) => a.kind === 'leftover_data')];
    let done = 0;
    const run = async (a: CleanupAction) => {
      let outcome: CleanupOutcome;
      try {
        await this.applyOne(a, plan);
        outcome = 'removed';
        this.opts.metrics?.reaperActions.inc({ action: `cleanup_${a.kind}` });
        this.opts.logger.debug({ kind: a.kind, sessionId: a.sessionId, containerId: a.containerId }, 'cleanup: removed');
      } catch (err) {
        if (err instanceof Skip) {
          outcome = 'skipped';
          skipped.push({ action: a, why: err.message });
        } else {
          outcome = 'failed';
          failures.push({ action: a, error: errMsg(err) });
          this.opts.logger.warn({ kind: a.kind, sessionId: a.sessionId, containerId: a.containerId, err: errMsg(err) }, 'cleanup: action failed');
        }
      }
      kinds[a.kind][outcome]++;
      onProgress?.({ done: ++done, total: ordered.length, action: a, outcome });
    };
    const conc = this.opts.concurrency ?? 4;
    // Like the reaper's death grace: a DELETE that has removed the container but not yet marked the
    // record must get to finish before a dead record is declared.
    const wait = plan.plannedAt + DEAD_RECORD_SETTLE_MS - Date.now();
    if (wait > 0 && plan.actions.some((a) => a.kind === 'dead_record')) await new Promise((r) => setTimeout(r, wait));
    await mapConcurrent(ordered.filter((a) => a.kind !== 'leftover_data'), conc, run);
    await mapConcurrent(ordered.filter((a) => a.kind === 'leftover_data'), conc, run);
    return { namespace: this.opts.namespace, kinds, failures, skipped, durationMs: Date.now() - started };
  }

  private async applyOne(a: CleanupAction, plan: CleanupPlan): Promise<void> {
    const redisOk = !plan.recordsError;
    const store = this.opts.sessions.store;
    switch (a.kind) {
      case 'expired': {
        const rec = await store.get(a.sessionId!);
        if (!rec || rec.status === 'terminated') return; // someone else got there: already gone
        const now = Date.now();
        if (rec.expiresAt > now) throw new Skip('touched since the plan');
        if (rec.status === 'busy' && !a.stuck) throw new Skip('busy');
        await store.claimExpired(rec.id, now).catch(() => undefined);
        await this.opts.sessions.terminate(rec, 'expired');
        return;
      }
      case 'dead_record': {
        const rec = await store.get(a.sessionId!);
        if (!rec || rec.status === 'terminated') return;
        if (!sameContainer(rec.containerId, a.containerId)) throw new Skip('record changed since the plan');
        const info = await this.runtime(rec.host).inspect(rec.containerId);
        if (info && (info.running || info.state === 'paused')) throw new Skip(`container is ${info.state}`);
        await this.opts.sessions.terminate(rec, !info ? 'container_removed' : info.oomKilled ? 'oom' : 'container_exited');
        return;
      }
      case 'orphan_container': {
        if (a.sessionId) {
          const rec = await store.get(a.sessionId);
          if (rec && rec.status !== 'terminated' && sameContainer(rec.containerId, a.containerId)) throw new Skip('a live session uses it now');
        }
        const pool = await this.inventory.readPool([a.host!]).catch((err) => {
          if (a.pooled) throw err; // a pool container is only removed once the list says it is not there
          return null;
        });
        if (findPoolEntry(pool, a.containerId!, a.sessionId)) throw new Skip('listed in the warm pool now');
        await this.removeContainer(a.host!, a.containerId!);
        return;
      }
      case 'all': {
        if (redisOk && a.sessionId) {
          const rec = await store.get(a.sessionId);
          if (rec && rec.status !== 'terminated' && sameContainer(rec.containerId, a.containerId)) {
            await this.opts.sessions.terminate(rec, 'admin_cleanup');
            if (a.poolEntry) await this.redis.lrem(a.poolEntry.key, 0, a.poolEntry.raw);
            return;
          }
        }
        await this.removeContainer(a.host!, a.containerId!);
        if (redisOk && a.poolEntry) await this.redis.lrem(a.poolEntry.key, 0, a.poolEntry.raw);
        return;
      }
      case 'leftover_data': {
        const rec = a.sessionId ? await store.get(a.sessionId) : null;
        if (rec && rec.status !== 'terminated') throw new Skip('the session is live');
        const gone = !rec;
        if (!gone && a.sessionState === 'gone') throw new Skip('the session record appeared since the plan');
        if (a.sessionId === null && a.keys?.some((key) => key.startsWith(this.keys.figure('')))) await this.recheckUnownedFigures(a);
        const keys = a.keys ?? [];
        for (let i = 0; i < keys.length; i += 500) await this.redis.del(...keys.slice(i, i + 500));
        if (a.index?.length) {
          const m = this.redis.multi();
          for (const e of a.index) {
            if (e.key === this.keys.sessions() && !gone) continue; // a tombstone stays listed
            if (e.type === 'set') m.srem(e.key, e.member);
            else m.zrem(e.key, e.member);
          }
          throwOnMultiError(await m.exec());
        }
        for (const j of gone ? (a.jobs ?? []) : []) {
          const q = this.queue(j.host);
          const state = await q.getJobState(j.jobId);
          if (state === 'active') throw new Error(`job ${j.jobId} is running`);
          if (state !== 'unknown') await q.remove(j.jobId);
        }
        return;
      }
    }
  }

  /** A figure key with no owner may belong to a session whose set appeared mid-scan: look again. */
  private async recheckUnownedFigures(a: CleanupAction) {
    const owned = new Set<string>();
    const scan = await this.scanKeys();
    for (const [sid, parts] of scan.sessionParts) {
      if (!parts.has('figs')) continue;
      const rec = await this.opts.sessions.store.get(sid);
      if (rec && rec.status !== 'terminated') for (const f of await this.redis.smembers(this.keys.sessionFigures(sid))) owned.add(this.keys.figure(f));
    }
    a.keys = (a.keys ?? []).filter((key) => !owned.has(key));
  }

  /** Removes a container only after checking, on the engine, that it carries this namespace's labels. */
  private async removeContainer(host: string, id: string) {
    const rt = this.runtime(host);
    const info = await rt.inspect(id);
    if (!info) return;
    if (info.labels[Labels.managed] !== 'true' || info.labels[Labels.namespace] !== this.opts.namespace) {
      throw new Error(`container ${id.slice(0, 12)} does not carry namespace ${this.opts.namespace}'s labels; left alone`);
    }
    await rt.remove(id);
  }

  /**
   * Ends sessions now: the session is terminated (container removed, record kept as a tombstone,
   * or deleted with all its data when `purge`), and any other container labelled with its id is removed.
   * Idempotent: a session already gone is not an error.
   */
  async kill(id: string, opts: { reason?: string; purge?: boolean } = {}): Promise<KillResult> {
    const result: KillResult = { id, outcome: 'not_found', containersRemoved: 0, purged: false };
    const redisOk = !this.opts.redisError;
    try {
      if (redisOk) {
        const rec = await this.opts.sessions.store.get(id);
        if (rec && rec.status !== 'terminated') {
          const had = await this.runtime(rec.host).inspect(rec.containerId);
          await this.opts.sessions.terminate(rec, opts.reason ?? 'admin_kill');
          result.outcome = 'terminated';
          if (had) result.containersRemoved++;
        } else if (rec) result.outcome = 'already_terminated';
        if (opts.purge && rec) {
          await this.purge(rec);
          result.purged = true;
        }
      } else result.outcome = 'containers_only';
      const listed = await this.inventory.listContainers(this.inventory.hosts, [`${Labels.sessionId}=${id}`]);
      const errors = listed.filter((h) => h.error).map((h) => `host ${h.host}: ${h.error}`);
      for (const h of listed) {
        for (const c of h.containers) {
          await this.removeContainer(h.host, c.id);
          result.containersRemoved++;
        }
      }
      if (errors.length) throw new Error(errors.join('; '));
      if (!redisOk) result.error = `records could not be read (Redis: ${this.opts.redisError})`;
    } catch (err) {
      result.outcome = 'failed';
      result.error = errMsg(err);
    }
    return result;
  }

  /** Deletes a session's record, indexes and data outright (no tombstone). */
  private async purge(rec: SessionRecord) {
    const k = this.keys;
    const execIds = await this.redis.lrange(k.sessionExecutions(rec.id), 0, -1);
    const figs = await this.redis.smembers(k.sessionFigures(rec.id));
    await this.opts.sessions.store.purge(rec);
    const keys = [k.sessionSeqs(rec.id), ...figs.map((f) => k.figure(f)), ...execIds.flatMap((e) => [k.execution(e), k.executionEvents(e)])];
    for (let i = 0; i < keys.length; i += 500) await this.redis.del(...keys.slice(i, i + 500));
  }
}

interface KeyScan {
  sessionIds: Set<string>;
  sessionParts: Map<string, Set<'execs' | 'seqs' | 'figs'>>;
  execs: Set<string>;
  execEvents: Set<string>;
  figures: Set<string>;
  hostSets: Set<string>;
}

function escapeRe(s: string) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function fmtAgo(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

export function emptySummary(namespace: string): CleanupSummary {
  return {
    namespace,
    kinds: Object.fromEntries(CLEANUP_KINDS.map((k) => [k, { found: 0, removed: 0, failed: 0, skipped: 0 }])) as Record<CleanupKind, KindSummary>,
    failures: [],
    skipped: [],
    durationMs: 0,
  };
}

/**
 * The reconcile pass a worker runs when it starts: one cleanup (never `all`) of its own host,
 * so a restart after a crash heals what the crash left. Never throws; logs its summary.
 */
export async function reconcileOnStart(p: {
  sessions: SessionService;
  executions: ExecutionStore;
  redis: Redis;
  namespace: string;
  host: string;
  graceMs: number;
  stuckBusyMs?: number;
  logger: Logger;
  metrics?: Metrics;
}): Promise<CleanupSummary | null> {
  const cleanup = new Cleanup({ ...p });
  try {
    await waitForRedis(p.redis, 15_000);
    const plan = await cleanup.plan({ hosts: [p.host], graceMs: p.graceMs, kinds: RECONCILE_KINDS, stuckBusyMs: p.stuckBusyMs });
    for (const w of plan.warnings) p.logger.warn({ host: p.host }, `reconcile: ${w}`);
    const summary = await cleanup.apply(plan);
    const counts = Object.fromEntries(RECONCILE_KINDS.map((k) => [k, summary.kinds[k]]));
    p.logger.info({ host: p.host, ...counts, durationMs: summary.durationMs }, 'reconcile pass done');
    return summary;
  } catch (err) {
    p.logger.warn({ host: p.host, err: errMsg(err) }, 'reconcile pass failed');
    return null;
  } finally {
    await cleanup.close().catch(() => undefined);
  }
}

/**
 * Resolves once the client is connected (commands fail fast while it is not, see `createRedis`);
 * rejects with the connection error after `timeoutMs`, or at the first error with `failFast` (a CLI).
 */
export function waitForRedis(redis: Redis, timeoutMs: number, opts: { failFast?: boolean } = {}): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    let lastError = 'no answer';
    const onError = (err: Error) => {
      lastError = errMsg(err) || (err as { code?: string }).code || 'connection error';
      if (opts.failFast) done(new Error(lastError));
    };
    const done = (err?: Error) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('error', onError);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const timer = setTimeout(() => done(new Error(lastError)), timeoutMs);
    redis.on('ready', onReady);
    redis.on('error', onError);
  });
}
