import IORedis, { type Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from './config';
import type { ContainerRuntime } from './container-runtime';
import { DockerRuntime } from './docker-runtime';
import { ExecutionStore } from './execution-store';
import type { Metrics } from './metrics';
import { SessionService, type SessionServiceOptions } from './session-service';
import { SessionStore } from './session-store';

export interface CoreParts {
  config: Config;
  redis: Redis;
  runtimes: Map<string, ContainerRuntime>;
  sessionStore: SessionStore;
  executionStore: ExecutionStore;
  sessions: SessionService;
}

export function createRedis(url: string, opts: { forBullmq?: boolean } = {}): Redis {
  return new IORedis(url, {
    // BullMQ's blocking connections must retry forever; plain commands fail fast so the API can answer 503.
    maxRetriesPerRequest: opts.forBullmq ? null : 1,
    enableOfflineQueue: !!opts.forBullmq,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    lazyConnect: false,
  });
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
    sessionHooks?: Pick<SessionServiceOptions, 'claimWarm' | 'beforeTerminate'>;
  },
): CoreParts {
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
    ...deps.sessionHooks,
  });
  return { config, redis, runtimes, sessionStore, executionStore, sessions };
}
