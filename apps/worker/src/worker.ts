import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import {
  ExecutionProcessor,
  ExecutionQueues,
  KernelChannelPool,
  Keys,
  Reaper,
  createCore,
  createLogger,
  createMetrics,
  createRedis,
  type Config,
  type CoreParts,
  type ExecutionJobData,
  type Metrics,
} from '@sessionbox/core';
import type { Logger } from 'pino';

export interface RunningWorker {
  core: CoreParts;
  worker: Worker<ExecutionJobData>;
  reaper: Reaper;
  metrics: Metrics;
  close(): Promise<void>;
}

/** One worker group serves one Docker host: its queue, its containers, its reaper. */
export async function startWorker(config: Config, opts: { logger?: Logger } = {}): Promise<RunningWorker> {
  const logger = opts.logger ?? createLogger('sessionbox-worker', config.logLevel);
  const metrics = createMetrics({ defaultMetrics: true });
  const core = createCore(config, { logger, metrics });
  const host = config.workerHost;
  const runtime = core.sessions.runtime(host);
  const channels = new KernelChannelPool(runtime);
  const queues = new ExecutionQueues(createRedis(config.redisUrl, { forBullmq: true }), config.namespace);
  const workerId = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  const processor = new ExecutionProcessor({
    sessions: core.sessions,
    executions: core.executionStore,
    channels,
    queues,
    host,
    workerId,
    maxOutputBytes: config.maxOutputBytes,
    maxFigures: config.maxFigures,
    maxFigurePixels: config.maxFigurePixels,
    logger,
    metrics,
  });
  const keys = new Keys(config.namespace);
  const worker = new Worker<ExecutionJobData>(
    keys.queueName(host),
    async (job) => processor.process(job.data.executionId, job.data.sessionId),
    {
      connection: createRedis(config.redisUrl, { forBullmq: true }),
      prefix: keys.queuePrefix(),
      concurrency: config.workerConcurrency,
      lockDuration: config.stalledIntervalMs,
      stalledInterval: config.stalledIntervalMs,
      maxStalledCount: 1,
      autorun: true,
    },
  );
  worker.on('failed', (job, err) => logger.error({ executionId: job?.data.executionId, err: err.message }, 'execution job failed'));
  worker.on('error', (err) => logger.warn({ err: err.message }, 'worker error'));
  const reaper = new Reaper({
    sessions: core.sessions,
    host,
    namespace: config.namespace,
    intervalMs: config.reaperIntervalMs,
    logger,
    metrics,
  });
  reaper.start();
  logger.info({ host, workerId, concurrency: config.workerConcurrency }, 'sessionbox worker started');

  let closed = false;
  return {
    core,
    worker,
    reaper,
    metrics,
    async close() {
      if (closed) return;
      closed = true;
      // Stop taking work, let running jobs finish, then release the engine and Redis.
      await reaper.stop();
      await worker.close();
      await queues.close();
      await channels.closeAll();
      await core.redis.quit().catch(() => core.redis.disconnect());
    },
  };
}
