import { createServer, type Server } from 'node:net';
import { rmSync } from 'node:fs';
import pino from 'pino';
import { DockerRuntime, HostMonitor, createCore, createMetrics, type ContainerRuntime, type CoreParts } from '@sessionbox/core';
import { docker, startSystem, type TestSystem } from './helpers/system';

/**
 * The host monitor against the real engine, with the engine's way out switched: `up` is the real
 * socket, `refused` a socket path nobody listens on, `hung` a socket that accepts and never answers.
 * (tests/e2e/multi-host.e2e.ts stops a real second dockerd instead.)
 */
const HUNG_SOCK = `/tmp/sessionbox-hung-${process.pid}.sock`;
let mode: 'up' | 'refused' | 'hung' = 'up';
const engines = {
  up: new DockerRuntime({ hostName: 'local', endpoint: 'unix:///var/run/docker.sock' }),
  refused: new DockerRuntime({ hostName: 'local', endpoint: `unix:///tmp/sessionbox-no-engine-${process.pid}.sock` }),
  hung: new DockerRuntime({ hostName: 'local', endpoint: `unix://${HUNG_SOCK}` }),
};
const switchable = new Proxy(engines.up, {
  get: (_t, prop) => {
    const rt = engines[mode] as unknown as Record<string | symbol, unknown>;
    const v = rt[prop];
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(rt) : v;
  },
}) as ContainerRuntime;

const exists = (id: string) =>
  docker
    .getContainer(id)
    .inspect()
    .then(() => true)
    .catch(() => false);

describe('host monitor', () => {
  let sys: TestSystem;
  let core: CoreParts;
  let monitor: HostMonitor;
  let hung: Server;
  const metrics = createMetrics();

  beforeAll(async () => {
    rmSync(HUNG_SOCK, { force: true });
    hung = createServer(() => undefined);
    await new Promise<void>((resolve) => hung.listen(HUNG_SOCK, resolve));
    sys = await startSystem({ SESSIONBOX_HOST_CAPACITY: '4' });
    core = createCore(sys.config, { logger: pino({ level: 'silent' }), metrics, runtimes: new Map([['local', switchable]]) });
    monitor = new HostMonitor({
      sessions: core.sessions,
      executions: core.executionStore,
      redis: core.redis,
      namespace: sys.config.namespace,
      host: 'local',
      intervalMs: 200,
      failuresBeforeDown: 2,
      pingTimeoutMs: 300,
      graceMs: 0,
      logger: pino({ level: 'silent' }),
      metrics,
    });
  });

  afterAll(async () => {
    mode = 'up';
    await core?.redis.quit();
    await sys?.stop();
    hung?.close();
    hung?.unref();
    rmSync(HUNG_SOCK, { force: true });
  });

  test('a missed ping or two is not a down host: sessions live on', async () => {
    const s = await sys.http.createSession();
    expect(await monitor.check()).toBe('up');
    mode = 'refused';
    expect(await monitor.check()).toBe('up'); // one miss of two
    mode = 'up';
    expect(await monitor.check()).toBe('up');
    expect(await core.sessionStore.isHostDown('local')).toBe(false);
    expect((await sys.http.run(s.id, 'print("still here")')).stdout).toBe('still here\n');
    expect((await sys.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
  });

  test('a hung engine is declared down: its sessions end with host_down, it gets no new ones; back up, its leftovers go', async () => {
    const a = await sys.http.createSession();
    const b = await sys.http.createSession();
    const recA = (await core.sessionStore.get(a.id))!;
    const recB = (await core.sessionStore.get(b.id))!;

    mode = 'hung';
    expect(await monitor.check()).toBe('up');
    expect(await monitor.check()).toBe('down');
    expect(await core.sessionStore.isHostDown('local')).toBe(true);

    for (const s of [a, b]) {
      const r = await sys.http.get(`/v1/sessions/${s.id}`);
      expect(r.status).toBe(410);
      expect(r.body.error).toMatchObject({ code: 'session_terminated', message: expect.stringContaining('host_down') });
      const run = await sys.http.post(`/v1/sessions/${s.id}/executions?wait=true`, { code: '1' });
      expect(run.status).toBe(410);
      expect(run.body.error.code).toBe('session_terminated');
    }
    const refused = await sys.http.post('/v1/sessions', {});
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('capacity_exhausted');
    // The engine could not be asked to remove anything meanwhile.
    expect(await exists(recA.containerId)).toBe(true);

    mode = 'refused';
    expect(await monitor.check()).toBe('down');

    mode = 'up';
    expect(await monitor.check()).toBe('up');
    expect(await core.sessionStore.isHostDown('local')).toBe(false);
    expect(await exists(recA.containerId)).toBe(false);
    expect(await exists(recB.containerId)).toBe(false);
    expect((await metrics.sessionsTerminated.get()).values.find((v) => v.labels.reason === 'host_down')?.value).toBe(2);

    const again = await sys.http.createSession();
    expect((await sys.http.run(again.id, 'print(1 + 1)')).stdout).toBe('2\n');
  });

  test('a down flag left by an earlier run is cleared once the engine answers', async () => {
    mode = 'up';
    await core.sessionStore.setHostDown('local', true);
    const fresh = new HostMonitor({ ...monitor.opts });
    expect(fresh.state).toBe('unknown');
    expect(await fresh.check()).toBe('up');
    expect(await core.sessionStore.isHostDown('local')).toBe(false);
  });
});
