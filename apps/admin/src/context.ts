import pino, { type Logger } from 'pino';
import type { Redis } from 'ioredis';
import {
  Cleanup,
  SessionInventory,
  ValidationError,
  createCore,
  createRedis,
  loadConfig,
  waitForRedis,
  errMsg,
  type Config,
  type CoreParts,
} from '@sessionbox/core';

/** Options every command accepts (see `main.ts`). */
export interface GlobalOptions {
  namespace: string;
  redisUrl: string;
  verbose?: boolean;
  /** Act through a running API's /v1/admin routes instead of Redis and the engines (kill, cleanup). */
  url?: string;
  /** The admin key for --url. */
  key?: string;
}

/** Bad input on the command line: exit code 2. */
export class UsageError extends ValidationError {}

export interface Io {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  err: NodeJS.WritableStream & { isTTY?: boolean };
}

export interface AdminContext {
  config: Config;
  logger: Logger;
  core: CoreParts;
  /** Why Redis could not be used (null when it answered). */
  redisError: string | null;
  inventory: SessionInventory;
  cleanup: Cleanup;
  close(): Promise<void>;
}

const REDIS_CONNECT_TIMEOUT_MS = 3000;

/** Config for the chosen namespace; an invalid one is a usage error. */
export function adminConfig(g: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig({ ...env, SESSIONBOX_NAMESPACE: g.namespace, SESSIONBOX_REDIS_URL: g.redisUrl });
  } catch (err) {
    throw new UsageError(errMsg(err));
  }
}

/**
 * Connects to Redis (briefly: a CLI must not hang on a dead Redis) and the engines. With Redis
 * down the context still works on containers by label, and `redisError` says why records are missing.
 */
export async function openAdmin(g: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Promise<AdminContext> {
  if (g.url) throw new UsageError('--url serves kill and cleanup; ls and inspect read Redis and the engines (the console\'s operator view lists sessions through the API)');
  const config = adminConfig(g, env);
  // Logs go to stderr so that --json output on stdout stays parseable.
  const logger = pino({ name: 'sessionbox-admin', level: g.verbose ? 'debug' : 'warn', base: { app: 'sessionbox-admin' } }, pino.destination(2));
  const redis: Redis = createRedis(config.redisUrl);
  redis.on('error', () => undefined); // reported once below, not on every reconnect attempt
  let redisError: string | null = null;
  try {
    await waitForRedis(redis, REDIS_CONNECT_TIMEOUT_MS, { failFast: true });
  } catch (err) {
    redisError = errMsg(err);
    redis.disconnect();
  }
  const core = createCore(config, { logger, redis });
  const inventory = new SessionInventory({
    redis,
    redisError,
    store: core.sessionStore,
    executions: core.executionStore,
    runtimes: core.runtimes,
    namespace: config.namespace,
  });
  const cleanup = new Cleanup({
    sessions: core.sessions,
    executions: core.executionStore,
    redis,
    redisError,
    namespace: config.namespace,
    logger,
  });
  return {
    config,
    logger,
    core,
    redisError,
    inventory,
    cleanup,
    async close() {
      await cleanup.close().catch(() => undefined);
      if (redisError) redis.disconnect();
      else await redis.quit().catch(() => redis.disconnect());
    },
  };
}

export function recordsWarning(io: Io, error: string | null) {
  if (error) io.err.write(`warning: records could not be read (Redis: ${error}); showing containers by label only\n`);
}
