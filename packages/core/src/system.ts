import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './infra/config';
import type { ContainerRuntime } from './runtime/container-runtime';
import { DockerRuntime } from './runtime/docker-runtime';
import { ExecutionStore } from './executions/execution-store';
import { KeyLimits } from './auth/key-limits';
import type { Metrics } from './infra/metrics';
import { createRedis } from './infra/redis';
import { createSessionFiles, sessionFilesHooks, type SessionFiles } from './files/session-files';
import { SessionService, type SessionServiceOptions } from './sessions/session-service';
import { SessionStore } from './sessions/session-store';
import { HostBudget } from './sessions/host-budget';
import { TERMINAL_STATUSES } from './contract/schemas';

export interface CoreParts {
  config: Config;
  redis: Redis;
  runtimes: Map<string, ContainerRuntime>;
  sessionStore: SessionStore;
  executionStore: ExecutionStore;
  sessions: SessionService;
  /** Present when asked for (`files: true`): api and worker, which archive and restore files. */
  files: SessionFiles | null;
}

export function createRuntimes(config: Config): Map<string, ContainerRuntime> {
  return new Map(config.dockerHosts.map((h) => [h.name, new DockerRuntime({ hostName: h.name, endpoint: h.endpoint })]));
}

/** Wires the stores and the session service the same way for api, worker, CLI and tests. */
export function createCore(
  config: Config,
  deps: {
    logger: Logger;
    metrics?: Metrics;
    redis?: Redis;
    runtimes?: Map<string, ContainerRuntime>;
    sessionHooks?: Pick<SessionServiceOptions, 'claimWarm' | 'beforeTerminate' | 'goneDetails'>;
    /** Also make the SessionFiles service and hook it into the session lifecycle (archive on expiry, 410 details). */
    files?: boolean;
  },
): CoreParts {
  // SessionFiles needs the SessionService, whose hooks need SessionFiles: the hooks look it up late.
  let files: SessionFiles | null = null;
  const filesHooks = deps.files ? sessionFilesHooks(() => files ?? undefined) : {};
  const redis = deps.redis ?? createRedis(config.redisUrl);
  const runtimes = deps.runtimes ?? createRuntimes(config);
  const sessionStore = new SessionStore({ redis, namespace: config.namespace, tombstoneSeconds: config.tombstoneSeconds });
  const executionStore = new ExecutionStore({ redis, namespace: config.namespace, retentionSeconds: config.tombstoneSeconds });
  const sessions = new SessionService({
    store: sessionStore,
    executions: executionStore,
    runtimes,
    capacities: new Map(config.dockerHosts.map((h) => [h.name, h.capacity])),
    namespace: config.namespace,
    image: config.image,
    ociRuntime: config.runtime,
    defaultTtlSeconds: config.defaultTtlSeconds,
    logger: deps.logger,
    metrics: deps.metrics,
    limits: new KeyLimits({
      redis,
      namespace: config.namespace,
      store: sessionStore,
      keys: config.apiKeys,
      defaults: {
        maxSessions: config.keyMaxSessions,
        executionsPerMinute: config.keyExecutionsPerMinute,
        maxRunningExecutions: config.keyMaxRunningExecutions,
        maxQueuedExecutions: config.keyMaxQueuedExecutions,
        maxMemoryMb: config.keyMaxMemoryMb,
        maxCpus: config.keyMaxCpus,
      },
      logger: deps.logger,
      executionState: async (id) => {
        const rec = await executionStore.get(id);
        return !rec ? 'gone' : TERMINAL_STATUSES.has(rec.status) ? 'finished' : 'inflight';
      },
    }),
    maxLimits: config.maxSessionLimits,
    hostBudget: new HostBudget({
      redis,
      namespace: config.namespace,
      runtimes,
      hostMemoryMb: config.hostMemoryMb,
      overcommit: config.hostMemoryOvercommit,
    }),
    ...filesHooks,
    ...deps.sessionHooks,
  });
  if (deps.files) files = createSessionFiles(config, { sessions, redis, logger: deps.logger, metrics: deps.metrics });
  return { config, redis, runtimes, sessionStore, executionStore, sessions, files };
}
