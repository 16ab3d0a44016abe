import IORedis, { type Redis } from 'ioredis';
import { withTimeout } from './timers';

/** The one way a process connects to Redis (api, worker, CLI, tests). */
export function createRedis(url: string, opts: { forBullmq?: boolean } = {}): Redis {
  const r = new IORedis(url, {
    // BullMQ's blocking connections must retry forever; plain commands fail fast so the API can answer 503.
    maxRetriesPerRequest: opts.forBullmq ? null : 1,
    ...(opts.forBullmq ? {} : { commandTimeout: 5000 }),
    retryStrategy: (times) => Math.min(times * 200, 2000),
  });
  // Connection errors reach callers through their commands (and /healthz); the event itself is noise.
  r.on('error', () => undefined);
  return r;
}

/** Quits when connected, drops the socket otherwise: a close must never wait on a Redis that is down. */
export async function closeRedis(r: Redis, timeoutMs = 2000): Promise<void> {
  if (r.status !== 'ready') return r.disconnect();
  await withTimeout(r.quit(), timeoutMs).catch(() => r.disconnect());
}

/**
 * Resolves once the client is connected (commands fail fast while it is not, see `createRedis`);
 * rejects with the connection error after `timeoutMs`, or at the first error with `failFast` (a CLI).
 */
export function waitForRedis(redis: Redis, timeoutMs: number, opts: { failFast?: boolean } = {}): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    let lastError = 'no answer';
    const onError = (err: Error) => {
      lastError = (err?.message ?? String(err)) || (err as { code?: string }).code || 'connection error';
      if (opts.failFast) done(new Error(lastError));
    };
    const done = (err?: Error) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('error', onError);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const timer = setTimeout(() => done(new Error(lastError)), timeoutMs);
    redis.on('ready', onReady);
    redis.on('error', onError);
  });
}
