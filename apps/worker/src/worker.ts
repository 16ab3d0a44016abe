import { hostname } from 'node:os';
import { Worker } from 'bullmq';
import {
  ExecutionProcessor,
  ExecutionQueues,
  KernelChannelPool,
  Keys,
  Reaper,
  HostMonitor,
  WarmPools,
  CloseSteps,
  TimerLoop,
  disabledWarmPool,
  errMsg,
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
  type WarmPoolControl,
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
  /** Warm containers for default limits (`disabledWarmPool` when SESSIONBOX_POOL_SIZE and SESSIONBOX_POOL_LAZY_SIZE are 0). */
  pool: WarmPoolControl;
  metrics: Metrics;
  /** The start-up reconcile pass (null when off or failed). */
  reconciled: Promise<CleanupSummary | null>;
  /** Written into the records this worker runs (`workerId`). */
  workerId: string;
  /**
   * Stops taking jobs first, lets running ones finish (up to SESSIONBOX_SHUTDOWN_GRACE_MS), then
   * stops the loops and releases the engine and Redis. Each step runs even if an earlier one
   * failed; every call returns the first call's promise.
   */
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
  const archiveSweep = new TimerLoop({
    name: 'archive sweep',
    intervalMs: config.archiveSweepIntervalMs,
    firstRun: 'after-interval',
    run: () => files.sweepArchives(),
    logger,
    unref: true,
  });
  archiveSweep.start();
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
    maxFigureBytes: config.maxFigureBytes,
    maxSessionFigureBytes: config.maxSessionFigureBytes,
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
  const pool: WarmPoolControl =
    config.poolSize + config.poolLazySize > 0
      ? new WarmPools({
          redis: core.redis,
          runtime,
          channels,
          namespace: config.namespace,
          image: config.image,
          ociRuntime: config.runtime,
          size: config.poolSize,
          lazySize: config.poolLazySize,
          maxAgeMs: config.poolMaxAgeSeconds * 1000,
          memoryBudgetMb: config.poolMemoryMb,
          demandWindowMs: config.poolDemandWindowSeconds * 1000,
          logger,
          metrics,
        })
      : disabledWarmPool;
  pool.start();
  const reconciled = config.reconcileOnStart
    ? reconcileOnStart({
        sessions: core.sessions,
        executions: core.executionStore,
        redis: core.redis,
        namespace: config.namespace,
        host,
        graceMs: config.reconcileGraceMs,
        stuckBusyMs: config.stuckBusyMs,
        logger,
        metrics,
      })
    : Promise.resolve(null);
  logger.info({ host, workerId, concurrency: config.workerConcurrency }, 'sessionbox worker started');

  const steps = new CloseSteps(logger)
    // Intake first: no job is taken from here on; running ones finish (they still need everything below).
    .add('stop taking jobs', () =>
      withTimeout(worker.close(), config.shutdownGraceMs, 'running jobs').catch((err) =>
        logger.warn({ err: errMsg(err) }, 'jobs still running at the end of the grace; another worker fails them as worker_lost'),
      ),
    )
    .add('metrics http', () => http?.close())
    .add('host monitor', () => monitor.stop())
    .add('reaper', () => reaper.stop())
    .add('warm pool', () => pool.stop())
    .add('start-up reconcile', () => reconciled)
    .add('archive sweep', () => archiveSweep.stop())
    .add('files', () => files.close())
    .add('worker connection', () => closeRedis(workerConnection))
    .add('queues', () => queues.close())
    .add('kernel channels', () => channels.closeAll())
    .add('redis', () => closeRedis(core.redis));
  return {
    core,
    worker,
    reaper,
    monitor,
    http,
    pool,
    metrics,
    reconciled,
    workerId,
    close: () => steps.close(),
  };
}
