import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ExecutionEvents,
  ExecutionQueues,
  ExecutionService,
  createCore,
  createLogger,
  createMetrics,
  createRedis,
  type Config,
} from '@sessionbox/core';
import type { Logger } from 'pino';
import { createApp, type RouterFactory } from './app';
import type { ApiContext } from './context';
import { extraRouters } from './routers';

export interface RunningApi {
  url: string;
  server: Server;
  ctx: ApiContext;
  close(): Promise<void>;
}

export async function startApi(config: Config, opts: { logger?: Logger; extra?: RouterFactory[] } = {}): Promise<RunningApi> {
  const logger = opts.logger ?? createLogger('sessionbox-api', config.logLevel);
  const metrics = createMetrics({ defaultMetrics: true });
  const core = createCore(config, { logger, metrics });
  const subscriber = createRedis(config.redisUrl, { forBullmq: true });
  const events = new ExecutionEvents(subscriber, config.namespace);
  const queues = new ExecutionQueues(createRedis(config.redisUrl, { forBullmq: true }), config.namespace);
  const executions = new ExecutionService({
    sessions: core.sessions,
    executions: core.executionStore,
    queues,
    events,
    maxCodeBytes: config.maxCodeBytes,
    maxTimeoutMs: config.maxTimeoutMs,
  });
  const ctx: ApiContext = { config, core, executions, events, queues, logger, metrics };
  void events.start().catch((err) => logger.warn({ err: (err as Error).message }, 'event subscription failed; will retry'));
  const app = createApp(ctx, [...extraRouters, ...(opts.extra ?? [])]);
  const host = config.host ?? '127.0.0.1';
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(config.port, host, () => resolve(s));
    s.once('error', reject);
  });
  server.keepAliveTimeout = 65_000;
  const addr = server.address() as AddressInfo;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`;
  logger.info({ url }, 'sessionbox api listening');
  return {
    url,
    server,
    ctx,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await queues.close();
      await events.close();
      await core.redis.quit().catch(() => core.redis.disconnect());
    },
  };
}
