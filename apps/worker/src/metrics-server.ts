import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Redis } from 'ioredis';
import { errMsg, type HostMonitor, type Metrics } from '@sessionbox/core';

export interface WorkerHttp {
  url: string;
  close(): Promise<void>;
}

/**
 * The worker's own small listener (SESSIONBOX_WORKER_METRICS_PORT): `/metrics` for Prometheus
 * (executions, queue wait, run time, reaper, OOM kills, timeouts of this host) and `/healthz`
 * (Redis reachable; the engine's state is reported but does not fail it: a worker whose engine
 * is away is still doing its job, marking the host down).
 */
export async function startWorkerHttp(p: {
  port: number;
  bind: string;
  host: string;
  metrics: Metrics;
  redis: Redis;
  monitor: HostMonitor;
}): Promise<WorkerHttp> {
  const app = express();
  app.disable('x-powered-by');
  app.get('/metrics', async (_req, res) => {
    try {
      const body = await p.metrics.registry.metrics();
      res.type(p.metrics.registry.contentType).send(body);
    } catch (err) {
      res.status(500).type('text/plain').send(`metrics failed: ${errMsg(err)}\n`);
    }
  });
  app.get('/healthz', async (_req, res) => {
    const redis = await p.redis.ping().then(
      () => 'ok',
      (err) => `down: ${errMsg(err)}`,
    );
    const body = { status: redis === 'ok' ? 'ok' : 'unavailable', host: p.host, checks: { redis, engine: p.monitor.state } };
    res.status(redis === 'ok' ? 200 : 503).json(body);
  });
  app.use((_req, res) => res.status(404).json({ error: { code: 'route_not_found', message: 'the worker serves /metrics and /healthz only' } }));
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(p.port, p.bind, () => resolve(s));
    s.once('error', reject);
  });
  const addr = server.address() as AddressInfo;
  return {
    url: `http://${p.bind === '0.0.0.0' ? '127.0.0.1' : p.bind}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
