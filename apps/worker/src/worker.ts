import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import {
  ExecutionProcessor,
  ExecutionQueues,
  KernelChannelPool,
  Keys,
  Reaper,
  HostMonitor,
  WarmPool,
  createCore,
  createLogger,
  createMetrics,
  createRedis,
  closeRedis,
  withTimeout,
  reconcileOnStart,
  type CleanupSummary,
  type Config,
  type CoreParts,
  type ExecutionJobData,
  type Metrics,
} from '@sessionbox/core';
import type { Logger } from 'pino';
import { startWorkerHttp, type WorkerHttp } from './metrics-server';

export interface RunningWorker {
  core: CoreParts;
  worker: Worker<ExecutionJobData>;
  reaper: Reaper;
  /** Pings this worker's engine; marks the host down (and back up) in Redis. */
  monitor: HostMonitor;
  /** `/metrics` + `/healthz` when SESSIONBOX_WORKER_METRICS_PORT is set. */
  http: WorkerHttp | null;
  /** Warm containers for default limits (null when SESSIONBOX_POOL_SIZE is 0). */
  pool: WarmPool | null;
  metrics: Metrics;
  /** The start-up reconcile pass (null when off or failed). */
  reconciled: Promise<CleanupSummary | null>;
  close(): Promise<void>;
}

/** One worker group serves one Docker host: its queue, its containers, its reaper. */
export async function startWorker(config: Config, opts: { logger?: Logger } = {}): Promise<RunningWorker> {
  const logger = opts.logger ?? createLogger('sessionbox-worker', config.logLevel);
  const metrics = createMetrics({ defaultMetrics: true });
  // Files: archives expired sessions' files (reaper -> beforeTerminate) and deletes archives past their time.
  const core = createCore(config, { logger, metrics, files: true });
  const files = core.files!;
  const host = config.workerHost;
  const runtime = core.sessions.runtime(host);
  const channels = new KernelChannelPool(runtime);
  const archiveSweep = setInterval(
    () => void files.sweepArchives().catch((err) => logger.warn({ err: (err as Error).message }, 'archive sweep failed')),
    Math.max(config.reaperIntervalMs, Math.min(60_000, config.archiveSeconds * 250)),
  );
  archiveSweep.unref();
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
  const workerConnection = createRedis(config.redisUrl, { forBullmq: true });
  const worker = new Worker<ExecutionJobData>(
    keys.queueName(host),
    async (job) => processor.process(job.data.executionId, job.data.sessionId),
    {
      connection: workerConnection,
      prefix: keys.queuePrefix(),
      concurrency: config.workerConcurrency,
      lockDuration: config.stalledIntervalMs,
      stalledInterval: config.stalledIntervalMs,
      maxStalledCount: 1,
      autorun: true,
    },
  );
  worker.on('failed', (job, err) =>
    logger.error({ executionId: job?.data.executionId, sessionId: job?.data.sessionId, host, err: err.message }, 'execution job failed'),
  );
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
  const monitor = new HostMonitor({
    sessions: core.sessions,
    executions: core.executionStore,
    redis: core.redis,
    namespace: config.namespace,
    host,
    intervalMs: config.hostCheckIntervalMs,
    failuresBeforeDown: config.hostDownAfterFailures,
    graceMs: config.reconcileGraceMs,
    logger,
    metrics,
  });
  monitor.start();
  const http =
    config.workerMetricsPort === null
      ? null
      : await startWorkerHttp({ port: config.workerMetricsPort, bind: config.host ?? '127.0.0.1', host, metrics, redis: core.redis, monitor });
  const pool =
    config.poolSize > 0
      ? new WarmPool({
          redis: core.redis,
          runtime,
          channels,
          namespace: config.namespace,
          image: config.image,
          ociRuntime: config.runtime,
          size: config.poolSize,
          maxAgeMs: config.poolMaxAgeSeconds * 1000,
          logger,
          metrics,
        })
      : null;
  pool?.start();
  const reconciled = config.reconcileOnStart
    ? reconcileOnStart({
        sessions: core.sessions,
        executions: core.executionStore,
        redis: core.redis,
        namespace: config.namespace,
        host,
        graceMs: config.reconcileGraceMs,
        stuckBusyMs: config.maxTimeoutMs + 60_000,
        logger,
        metrics,
      })
    : Promise.resolve(null);
  logger.info({ host, workerId, concurrency: config.workerConcurrency }, 'sessionbox worker started');

  let closed = false;
  return {
    core,
    worker,
    reaper,
    monitor,
    http,
    pool,
    metrics,
    reconciled,
    async close() {
      if (closed) return;
      closed = true;
      // Stop taking work, let running jobs finish, then release the engine and Redis.
      await http?.close();
      await monitor.stop();
      await reaper.stop();
      await pool?.stop();
      await reconciled;
      clearInterval(archiveSweep);
      await files.close();
      await withTimeout(worker.close(), 30_000, 'worker close').catch(() => worker.close(true));
      await closeRedis(workerConnection);
      await queues.close();
      await channels.closeAll();
      await closeRedis(core.redis);
    },
  };
}
