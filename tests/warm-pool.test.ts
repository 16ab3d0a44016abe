import IORedis from 'ioredis';
import { DockerRuntime, Keys, WarmPool, createLogger, warmClaimer, type PoolEntry } from '@sessionbox/core';
import { REDIS_URL, docker, namespaceContainers, removeNamespace, sleep, testNamespace, useSystem, waitFor } from './helpers/system';

const POOL = 2;
const runtime = new DockerRuntime({ hostName: 'local', endpoint: 'unix:///var/run/docker.sock' });
const logger = createLogger('warm-pool-test', 'silent');

const poolLabelled = async (ns: string) =>
  (await namespaceContainers(ns)).filter((c) => c.Labels['sessionbox.pool'] === 'true');

describe('warm pool (api + worker, SESSIONBOX_POOL_SIZE=2)', () => {
  // a system of its own for each test: its pool starts empty and no test sees what another claimed
  const sys = useSystem({ SESSIONBOX_POOL_SIZE: String(POOL) }, { per: 'test' });
  let redis: IORedis;
  let keys: Keys;
  const listed = async (): Promise<PoolEntry[]> => (await redis.lrange(keys.pool('local'), 0, -1)).map((r) => JSON.parse(r));
  const full = () => waitFor(async () => (await listed()).length === POOL, 90_000, 100);

  beforeAll(() => {
    redis = new IORedis(REDIS_URL);
  });
  beforeEach(() => {
    keys = new Keys(sys.config.namespace);
  });
  afterAll(async () => {
    await redis.quit();
  });

  test('fills to its size and never above, with labelled containers whose kernel is ready', async () => {
    await full();
    // Watch it for a while: listed + being made never passes the size, nor do unclaimed containers.
    for (let i = 0; i < 10; i++) {
      const [len, filling] = await Promise.all([redis.llen(keys.pool('local')), redis.zcard(keys.poolFilling('local'))]);
      expect(len + filling).toBeLessThanOrEqual(POOL);
      expect((await poolLabelled(sys.config.namespace)).length).toBeLessThanOrEqual(POOL);
      await sleep(150);
    }
    const entries = await listed();
    expect(new Set(entries.map((e) => e.containerId)).size).toBe(POOL);
    for (const e of entries) {
      const info = await docker.getContainer(e.containerId).inspect();
      expect(info.State.Running).toBe(true);
      expect(info.Config.Labels).toMatchObject({
        'sessionbox.managed': 'true',
        'sessionbox.namespace': sys.config.namespace,
        'sessionbox.session-id': e.sessionId,
        'sessionbox.pool': 'true',
        'sessionbox.host': 'local',
      });
      expect(info.Name).toBe(`/sessionbox-${sys.config.namespace}-${e.sessionId}`);
    }
  });

  test('a claimed container serves exactly one session, is never reused, and the pool refills', async () => {
    await full();
    const before = await listed();
    const a = await sys.http.createSession();
    const b = await sys.http.createSession();
    // FIFO: the oldest listed containers, under the session ids they were made with.
    expect([a.id, b.id]).toEqual(before.map((e) => e.sessionId));
    const recA = (await sys.api.ctx.core.sessionStore.get(a.id))!;
    const recB = (await sys.api.ctx.core.sessionStore.get(b.id))!;
    expect([recA.containerId, recB.containerId]).toEqual(before.map((e) => e.containerId));
    // Warm for real: the kernel had its imports done, so the first run needs no start-up allowance.
    const run = await sys.http.run(a.id, 'import sys; print("matplotlib" in sys.modules, "pandas" in sys.modules)');
    expect(run.stdout).toBe('True True\n');

    await full();
    const refilled = await listed();
    const claimed = new Set([recA.containerId, recB.containerId]);
    expect(refilled.some((e) => claimed.has(e.containerId))).toBe(false);
    expect(refilled.some((e) => e.sessionId === a.id || e.sessionId === b.id)).toBe(false);

    // Once the session ends its container is gone for good: never listed again, never handed out.
    await sys.http.delete(`/v1/sessions/${a.id}`);
    expect(await docker.getContainer(recA.containerId).inspect().catch(() => null)).toBeNull();
    const c = await sys.http.createSession();
    const recC = (await sys.api.ctx.core.sessionStore.get(c.id))!;
    expect(claimed.has(recC.containerId)).toBe(false);
    expect((await listed()).some((e) => claimed.has(e.containerId))).toBe(false);
    await sys.http.delete(`/v1/sessions/${b.id}`);
    await sys.http.delete(`/v1/sessions/${c.id}`);
  });

  test('sessions with other limits start cold and leave the pool alone', async () => {
    await full();
    const before = (await listed()).map((e) => e.containerId);
    const s = await sys.http.createSession({ limits: { memoryMb: 256 } });
    const rec = (await sys.api.ctx.core.sessionStore.get(s.id))!;
    expect(before).not.toContain(rec.containerId);
    const info = await docker.getContainer(rec.containerId).inspect();
    expect(info.Config.Labels['sessionbox.pool']).toBeUndefined();
    expect((await listed()).map((e) => e.containerId)).toEqual(before);
    expect((await sys.http.run(s.id, 'print(6*7)')).stdout).toBe('42\n');
    await sys.http.delete(`/v1/sessions/${s.id}`);
  });

  test('a claim never hands out an entry past the max age: it is removed and the session starts cold', async () => {
    await full();
    const [oldest] = await listed();
    const claim = warmClaimer({ redis, runtimes: new Map([['local', runtime]]), namespace: sys.config.namespace, image: sys.config.image, maxAgeMs: 1, logger });
    // Every listed entry is older than 1 ms: all are discarded, none handed out.
    expect(await claim('local')).toBeNull();
    await waitFor(async () => !(await docker.getContainer(oldest.containerId).inspect().catch(() => null)), 10_000);
    await full();
  });

  test('a claim never hands out a container made from another image (a worker of another version): it is removed and the session starts cold', async () => {
    await full();
    const [oldest] = await listed();
    const claim = warmClaimer({ redis, runtimes: new Map([['local', runtime]]), namespace: sys.config.namespace, image: 'sessionbox/python-runner:another-version', maxAgeMs: 3_600_000, logger });
    expect(await claim('local')).toBeNull();
    await waitFor(async () => !(await docker.getContainer(oldest.containerId).inspect().catch(() => null)), 10_000);
    // The same entries are handed out to a claimer of the image they were made from.
    await full();
    const same = warmClaimer({ redis, runtimes: new Map([['local', runtime]]), namespace: sys.config.namespace, image: sys.config.image, maxAgeMs: 3_600_000, logger });
    const got = await same('local');
    expect(got).not.toBeNull();
    await runtime.remove(got!.containerId);
    await full();
  });

  test('on close the worker removes its listed containers and leaves live sessions alone', async () => {
    await full();
    const s = await sys.http.createSession();
    const rec = (await sys.api.ctx.core.sessionStore.get(s.id))!;
    await sys.worker!.close();
    const left = await namespaceContainers(sys.config.namespace);
    expect(left.map((c) => c.Id)).toEqual([rec.containerId]);
    expect(await redis.llen(keys.pool('local'))).toBe(0);
    expect(await redis.zcard(keys.poolFilling('local'))).toBe(0);
    expect((await sys.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
  });
});

describe('WarmPool on its own', () => {
  const namespace = testNamespace('wp');
  let redis: IORedis;
  beforeAll(() => {
    redis = new IORedis(REDIS_URL);
  });
  afterAll(async () => {
    await redis.quit();
    await removeNamespace(namespace);
  });

  const make = (over: Partial<ConstructorParameters<typeof WarmPool>[0]> = {}) =>
    new WarmPool({
      redis,
      runtime,
      namespace,
      image: process.env.SESSIONBOX_IMAGE ?? 'sessionbox/python-runner:latest',
      ociRuntime: 'runc',
      size: 1,
      maxAgeMs: 60_000,
      logger,
      ...over,
    });

  test('replaces a container past its max age', async () => {
    const pool = make({ maxAgeMs: 4000, checkIntervalMs: 300 });
    pool.start();
    try {
      const first = await waitFor(async () => (await pool.entries())[0], 90_000, 100);
      const next = await waitFor(async () => {
        const e = (await pool.entries())[0];
        return e && e.containerId !== first.containerId ? e : null;
      }, 90_000, 200);
      expect(next.sessionId).not.toBe(first.sessionId);
      expect(await docker.getContainer(first.containerId).inspect().catch(() => null)).toBeNull();
    } finally {
      await pool.stop();
    }
    expect(await namespaceContainers(namespace)).toEqual([]);
  });

  test('after a claim the refill waits until claims pause (settleMs), then refills', async () => {
    const pool = make({ settleMs: 4000 });
    const keys = new Keys(namespace);
    const claim = warmClaimer({ redis, namespace, runtimes: new Map([['local', runtime]]), image: pool.opts.image, maxAgeMs: 60_000, logger });
    pool.start();
    try {
      await waitFor(async () => (await pool.entries()).length === 1, 90_000, 100);
      const claimed = await claim('local');
      expect(claimed).not.toBeNull();
      // Two seconds of ticks (every 200 ms) into the 4 s hold: nothing is being made.
      for (let i = 0; i < 10; i++) {
        expect(await redis.zcard(keys.poolFilling('local'))).toBe(0);
        expect((await namespaceContainers(namespace)).filter((c) => c.Labels['sessionbox.pool'] === 'true' && c.Id !== claimed!.containerId)).toEqual([]);
        await sleep(200);
      }
      await waitFor(async () => (await pool.entries()).length === 1, 90_000, 100);
      await runtime.remove(claimed!.containerId);
    } finally {
      await pool.stop();
    }
    expect(await namespaceContainers(namespace)).toEqual([]);
  });

  test('a stop during a creation leaves no container behind and frees the slot', async () => {
    const pool = make();
    pool.start();
    const keys = new Keys(namespace);
    await waitFor(async () => (await namespaceContainers(namespace)).length > 0, 30_000, 20);
    expect(await redis.llen(keys.pool('local'))).toBe(0); // still importing: not listed yet
    await pool.stop();
    expect(await namespaceContainers(namespace)).toEqual([]);
    expect(await redis.zcard(keys.poolFilling('local'))).toBe(0);
    expect(await redis.llen(keys.pool('local'))).toBe(0);
  });
});
