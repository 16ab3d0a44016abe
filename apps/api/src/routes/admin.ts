import { randomUUID } from 'node:crypto';
import { Router, type NextFunction, type Request, type Response } from 'express';
import {
  TERMINATION_REASONS,
  CLEANUP_KINDS,
  Cleanup,
  Keys,
  POOL_TIERS,
  NotFoundError,
  SessionInventory,
  SessionboxError,
  withTimeout,
  type CleanupPlan,
  type Caller,
  type InventoryRow,
} from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { parse, requireJson } from '../http';
import { sessionIdParam } from './sessions';

/** A valid key that is not the admin key, on an admin route. */
export class AdminOnlyError extends SessionboxError {
  constructor() {
    super('admin_only', 'this route needs the admin key (SESSIONBOX_ADMIN_KEY)', 403);
  }
}

export const CleanupBody = z
  .object({
    dryRun: z.boolean().default(true),
    hosts: z.array(z.string()).min(1).optional(),
    graceSeconds: z.number().int().min(0).optional(),
    olderThanSeconds: z.number().int().min(0).optional(),
    kinds: z.array(z.enum(CLEANUP_KINDS.filter((k) => k !== 'all') as [string, ...string[]])).optional(),
    all: z.boolean().default(false),
  })
  .strict();

export const KillQuery = z
  .object({ purge: z.enum(['true', 'false', '1', '0']).optional(), reason: z.enum(TERMINATION_REASONS).optional() })
  .passthrough();

export const StatsQuery = z.object({ minutes: z.coerce.number().int().min(1).max(60).default(10) }).passthrough();

/** A dry-run plan is kept this long so that "apply" carries out what the operator saw (each action is re-checked). */
const PLAN_TTL_SECONDS = 600;
const LIVE_STATES = new Set(['ready', 'busy', 'dead', 'unknown']);

function requireAdmin(req: Request, _res: Response, next: NextFunction) {
  // No caller at all: no keys are configured (localhost only), and the single caller may do everything, as with the CLI.
  const who = (req as Request & { caller?: Caller }).caller;
  if (who && who.owner !== '*') return next(new AdminOnlyError());
  next();
}

const seconds = (ms: number) => Math.max(0, Math.round(ms / 1000));

/**
 * CPU in use, from two samples of a container's CPU time (the engine's one-shot stats carry no
 * previous sample): the operator view refreshes every few seconds, so the rate is over that interval.
 */
class CpuRates {
  private readonly last = new Map<string, { ns: number; at: number }>();

  rate(containerId: string, ns: number | undefined, at: number): number | null {
    if (ns === undefined) return null;
    const prev = this.last.get(containerId);
    this.last.set(containerId, { ns, at });
    if (!prev || at - prev.at < 500 || ns < prev.ns) return null;
    return ((ns - prev.ns) / 1e6 / (at - prev.at)) * 100;
  }

  /** Forgets containers that are gone. */
  keep(ids: Set<string>) {
    for (const id of this.last.keys()) if (!ids.has(id)) this.last.delete(id);
  }
}

function sessionRow(row: InventoryRow, executions: number, now: number, cpuPercent: number | null) {
  const rec = row.record;
  return {
    id: row.id,
    state: row.state,
    owner: rec?.owner ?? null,
    host: row.host,
    containerId: row.container?.id.slice(0, 12) ?? null,
    createdAt: rec ? new Date(rec.createdAt).toISOString() : null,
    ageSeconds: rec ? seconds(now - rec.createdAt) : null,
    idleSeconds: rec ? seconds(now - rec.lastActiveAt) : null,
    ttlLeftSeconds: rec ? seconds(rec.expiresAt - now) : null,
    memoryBytes: row.usage?.memoryBytes ?? null,
    memoryLimitBytes: rec ? rec.limits.memoryMb * 1024 * 1024 : null,
    cpuPercent: row.usage?.cpuPercent ?? cpuPercent,
    cpuSeconds: row.usage?.cpuTotalNs === undefined ? null : Math.round(row.usage.cpuTotalNs / 1e7) / 100,
    executions,
    metadata: rec?.metadata ?? {},
  };
}

function planJson(id: string, plan: CleanupPlan) {
  return {
    planId: id,
    namespace: plan.namespace,
    hosts: plan.hosts,
    plannedAt: new Date(plan.plannedAt).toISOString(),
    warnings: plan.warnings,
    actions: plan.actions.map((a) => ({ kind: a.kind, sessionId: a.sessionId, host: a.host, containerId: a.containerId?.slice(0, 12) ?? null, reason: a.reason })),
  };
}

/**
 * `/v1/admin/…`: what the admin CLI does, over HTTP, for the admin key. The same core parts
 * (SessionInventory, Cleanup) do the work; the console's operator view and `sessionbox-admin --url` use these.
 */
export function adminRouter(ctx: ApiContext): Router {
  const r = Router();
  const { core } = ctx;
  const keys = new Keys(ctx.config.namespace);
  const planKey = (id: string) => `${keys.prefix}admin:cleanup-plan:${id}`;
  const inventory = new SessionInventory({
    redis: core.redis,
    store: core.sessionStore,
    executions: core.executionStore,
    runtimes: core.runtimes,
    namespace: ctx.config.namespace,
  });
  const withCleanup = async <T>(fn: (c: Cleanup) => Promise<T>): Promise<T> => {
    const cleanup = new Cleanup({
      sessions: core.sessions,
      executions: core.executionStore,
      redis: core.redis,
      namespace: ctx.config.namespace,
      logger: ctx.logger,
      metrics: ctx.metrics,
    });
    try {
      return await fn(cleanup);
    } finally {
      await cleanup.close().catch(() => undefined);
    }
  };

  const cpu = new CpuRates();

  r.use('/v1/admin', requireAdmin);

  r.get('/v1/admin/sessions', async (req, res) => {
    const all = req.query.all === 'true';
    const snap = await inventory.snapshot({ usage: true });
    const rows = snap.rows.filter((row) => all || LIVE_STATES.has(row.state) || row.state === 'orphan');
    const pipe = core.redis.pipeline();
    for (const row of rows) pipe.llen(keys.sessionExecutions(row.id ?? '-'));
    const counts = ((await pipe.exec()) ?? []).map(([, v]) => Number(v ?? 0));
    const now = Date.now();
    const rates = rows.map((row) => (row.container && row.usage ? cpu.rate(row.container.id, row.usage.cpuTotalNs, snap.takenAt) : null));
    cpu.keep(new Set(snap.rows.flatMap((row) => (row.container ? [row.container.id] : []))));
    res.json({
      namespace: snap.namespace,
      takenAt: new Date(snap.takenAt).toISOString(),
      sessions: rows.map((row, i) => sessionRow(row, row.id ? counts[i] : 0, now, rates[i])),
      warnings: [
        ...(snap.recordsError ? [`records could not be read: ${snap.recordsError}`] : []),
        ...snap.hostErrors.map((h) => `host ${h.host}: ${h.error}`),
        ...(snap.poolError ? [`warm pool: ${snap.poolError}`] : []),
      ],
    });
  });

  r.delete('/v1/admin/sessions/:id', async (req, res) => {
    const id = sessionIdParam(String(req.params.id));
    const q = parse(KillQuery, req.query, 'query');
    const result = await withCleanup((c) => c.kill(id, { reason: q.reason ?? 'admin_kill', purge: q.purge === 'true' || q.purge === '1' }));
    res.status(result.outcome === 'failed' ? 502 : 200).json(result);
  });

  r.get('/v1/admin/hosts', async (_req, res) => {
    const hosts = await Promise.all(
      ctx.config.dockerHosts.map(async (h) => {
        const rt = core.runtimes.get(h.name);
        const [engine, live, down, pool, queue] = await Promise.all([
          rt
            ? withTimeout(rt.ping(), 3000, 'engine ping').then(
                () => 'ok',
                (err) => `down: ${(err as Error).message}`,
              )
            : 'not configured',
          core.sessionStore.liveIds(h.name).then((ids) => ids.length),
          core.redis.exists(keys.hostDown(h.name)),
          Promise.all(POOL_TIERS.map((tier) => core.redis.llen(keys.pool(h.name, tier)))),
          ctx.queues.forHost(h.name).getJobCounts('waiting', 'active', 'delayed', 'prioritized'),
        ]);
        return {
          name: h.name,
          capacity: h.capacity,
          liveSessions: live,
          takesSessions: down === 0,
          engine,
          warmPool: pool[0] + pool[1],
          warmPoolTiers: { eager: pool[0], lazy: pool[1] },
          queue: { waiting: (queue.waiting ?? 0) + (queue.prioritized ?? 0) + (queue.delayed ?? 0), active: queue.active ?? 0 },
        };
      }),
    );
    res.json({ namespace: ctx.config.namespace, poolTarget: ctx.config.poolSize + ctx.config.poolLazySize, hosts });
  });

  // Rate and latency per minute, from the execution records the system already keeps (queuedAt → finishedAt).
  r.get('/v1/admin/stats', async (req, res) => {
    const { minutes } = parse(StatsQuery, req.query, 'query');
    const now = Date.now();
    const from = now - minutes * 60_000;
    const records = await inventory.readRecords();
    const recent = [...records.values()].filter((s) => s.lastActiveAt >= from);
    const execs = (await Promise.all(recent.map((s) => core.executionStore.listForSession(s.id, 200)))).flat();
    const buckets = Array.from({ length: minutes }, (_, i) => ({ at: new Date(from + i * 60_000).toISOString(), executions: 0, failed: 0, latencies: [] as number[] }));
    for (const e of execs) {
      if (!e.finishedAt || e.finishedAt < from || e.finishedAt > now) continue;
      const b = buckets[Math.min(minutes - 1, Math.floor((e.finishedAt - from) / 60_000))];
      b.executions++;
      if (e.status !== 'succeeded') b.failed++;
      b.latencies.push(e.finishedAt - e.queuedAt);
    }
    const pct = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] : null);
    res.json({
      minutes,
      perMinute: buckets.map((b) => ({ at: b.at, executions: b.executions, failed: b.failed, p50Ms: pct(b.latencies, 0.5), p95Ms: pct(b.latencies, 0.95) })),
    });
  });

  r.post('/v1/admin/cleanup', requireJson, async (req, res) => {
    const body = parse(CleanupBody, req.body ?? {});
    if (body.all && !body.dryRun) {
      throw new SessionboxError('confirm_all', '"all" removes every container of the namespace: plan it with dryRun first, then apply the plan', 409);
    }
    const out = await withCleanup(async (c) => {
      const plan = await c.plan({
        hosts: body.hosts,
        graceMs: (body.graceSeconds ?? ctx.config.reconcileGraceMs / 1000) * 1000,
        olderThanMs: body.olderThanSeconds === undefined ? undefined : body.olderThanSeconds * 1000,
        kinds: body.kinds as never,
        all: body.all,
      });
      const id = randomUUID();
      if (body.dryRun) {
        await core.redis.set(planKey(id), JSON.stringify(plan), 'EX', PLAN_TTL_SECONDS);
        return { dryRun: true, plan: planJson(id, plan), summary: null };
      }
      return { dryRun: false, plan: planJson(id, plan), summary: await c.apply(plan) };
    });
    res.json(out);
  });

  r.post('/v1/admin/cleanup/:planId/apply', async (req, res) => {
    const id = String(req.params.planId);
    if (!z.uuid().safeParse(id).success) throw new NotFoundError('cleanup plan', id);
    // GETDEL: a plan is applied once.
    const raw = await core.redis.getdel(planKey(id));
    if (!raw) throw new NotFoundError('cleanup plan', id);
    const plan = JSON.parse(raw) as CleanupPlan;
    const summary = await withCleanup((c) => c.apply(plan));
    res.json({ dryRun: false, plan: planJson(id, plan), summary });
  });

  return r;
}
