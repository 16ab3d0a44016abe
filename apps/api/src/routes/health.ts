import { Router } from 'express';
import { errMsg } from '@sessionbox/core';
import type { ApiContext } from '../context';

async function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, rej) => (t = setTimeout(() => rej(new Error(`no answer in ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(t),
  );
}

export function healthRouter(ctx: ApiContext): Router {
  const r = Router();
  r.get('/healthz', async (_req, res) => {
    const checks: Record<string, string> = {};
    await Promise.all([
      within(ctx.core.redis.ping(), 1500).then(
        () => (checks.redis = 'ok'),
        (err) => (checks.redis = `down: ${errMsg(err)}`),
      ),
      ...[...ctx.core.runtimes].map(([host, rt]) =>
        within(rt.ping(), 3000).then(
          () => (checks[`docker:${host}`] = 'ok'),
          (err) => (checks[`docker:${host}`] = `down: ${errMsg(err)}`),
        ),
      ),
    ]);
    const down = Object.entries(checks).filter(([, v]) => v !== 'ok').map(([k]) => k);
    if (down.length === 0) return void res.json({ status: 'ok', checks });
    const code = down.some((d) => d === 'redis') ? 'redis_unavailable' : 'docker_unavailable';
    res.status(503).json({ status: 'unavailable', checks, error: { code, message: `not answering: ${down.join(', ')}` } });
  });
  return r;
}
