import { Router } from 'express';
import { Keys, POOL_TIERS, type CoreParts, type Metrics, type PoolTier } from '@sessionbox/core';
import type { ApiContext } from '../context';

const LIVE_STATUSES = ['ready', 'busy'] as const;

/**
 * The state gauges come from Redis at scrape time, so every API replica reports the same numbers
 * (the whole deployment, not this process): live sessions per host and status, warm pool size
 * per host, and whether each host takes sessions. The counters and histograms are this process's.
 */
export async function refreshStateGauges(core: CoreParts, metrics: Metrics): Promise<void> {
  const keys = new Keys(core.config.namespace);
  const hosts = core.config.dockerHosts.map((h) => h.name);
  const perHost = await Promise.all(
    hosts.map(async (host) => {
      const ids = await core.sessionStore.liveIds(host);
      const pipe = core.redis.pipeline();
      for (const id of ids) pipe.hget(keys.session(id), 'status');
      for (const tier of POOL_TIERS) pipe.llen(keys.pool(host, tier));
      pipe.exists(keys.hostDown(host));
      const res = (await pipe.exec()) ?? [];
      const out = res.map(([err, v]) => {
        if (err) throw err;
        return v;
      });
      const down = Number(out.pop());
      const pool = Object.fromEntries(POOL_TIERS.map((tier) => [tier, 0])) as Record<PoolTier, number>;
      for (const tier of [...POOL_TIERS].reverse()) pool[tier] = Number(out.pop());
      const counts = { ready: 0, busy: 0 } as Record<(typeof LIVE_STATUSES)[number], number>;
      for (const st of out) if (st === 'ready' || st === 'busy') counts[st]++;
      return { host, counts, pool, down: down === 1 };
    }),
  );
  metrics.sessionsLive.reset();
  for (const h of perHost) {
    for (const st of LIVE_STATUSES) metrics.sessionsLive.set({ host: h.host, status: st }, h.counts[st]);
    for (const tier of POOL_TIERS) metrics.poolSize.set({ host: h.host, tier }, h.pool[tier]);
    metrics.hostUp.set({ host: h.host }, h.down ? 0 : 1);
  }
}

/** `GET /metrics`: Prometheus text format from the process's one registry (prom-client). */
export function metricsRouter(ctx: ApiContext): Router {
  const r = Router();
  r.get('/metrics', async (_req, res, next) => {
    try {
      await refreshStateGauges(ctx.core, ctx.metrics);
      res.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
    } catch (err) {
      next(err);
    }
  });
  return r;
}
