import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Docker from 'dockerode';
import IORedis from 'ioredis';
import { startApi, type RunningApi } from '../apps/api/src/server';
import { startWorker, type RunningWorker } from '../apps/worker/src/worker';
import { describeIf, docker, Http, namespaceContainers, removeNamespace, sleep, startSystem, stopExpectingNoLeak, testConfig, testIf, waitFor, type TestSystem } from './helpers/system';

/**
 * Faults done for real: a worker SIGKILLed mid-run, Redis and a Docker engine restarted, the API
 * restarted with work queued, a container killed from outside, the engine refusing a create.
 * Redis and the engine that are restarted are private to this file (the shared ones serve other tests).
 */

const ROOT = resolve(__dirname, '..');
const IMAGE = 'sessionbox/python-runner:latest';

/** fetch with a ceiling: a fault must be answered, never hang (the ceiling is liveness, not speed). */
async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body: body !== undefined ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: json, text, headers: res.headers };
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

// ---- a worker as a child process -------------------------------------------------------------

interface ChildWorker {
  proc: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

async function spawnWorker(env: Record<string, string>): Promise<ChildWorker> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'apps/worker/src/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, SESSIONBOX_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((ok) => proc.once('exit', (code) => ok(code)));
  const collect = (chunk: Buffer) => output.push(...String(chunk).split('\n').filter(Boolean));
  proc.stdout!.on('data', collect);
  proc.stderr!.on('data', collect);
  try {
    await waitFor(async () => output.some((l) => l.includes('sessionbox worker started')), 60_000, 100);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`worker did not start: ${output.slice(-20).join('\n')}`);
  }
  return { proc, output, exited };
}

async function stopWorker(w: ChildWorker | null, signal: NodeJS.Signals = 'SIGTERM') {
  if (!w || w.proc.exitCode !== null || w.proc.signalCode !== null) return;
  w.proc.kill(signal);
  const t = setTimeout(() => w.proc.kill('SIGKILL'), 40_000);
  await w.exited;
  clearTimeout(t);
}

// ---- a private Redis ---------------------------------------------------------------------------

class PrivateRedis {
  proc: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'sessionbox-faults-redis-'));
  constructor(readonly port: number) {}

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** AOF on, fsync always: a restart keeps the records, as a production Redis with persistence would. */
  async start() {
    this.proc = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', this.dir],
      { stdio: 'ignore' },
    );
    const probe = new IORedis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on('error', () => undefined);
    try {
      await waitFor(async () => {
        try {
          if (probe.status !== 'ready') await probe.connect();
          return (await probe.ping()) === 'PONG';
        } catch {
          probe.disconnect();
          return false;
        }
      }, 20_000);
    } finally {
      probe.disconnect();
    }
  }

  /** SIGTERM: Redis flushes and exits, clients see the connection drop. */
  async stop() {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((ok) => p.once('exit', ok));
    p.kill('SIGTERM');
    await exited;
  }

  async destroy() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---- a private Docker engine (scripts/second-engine.sh, under a name of its own) -----------------

const ENGINE_NAME = 'sessionbox-faults-docker';
const ENGINE = {
  sock: `/run/${ENGINE_NAME}.sock`,
  pidfile: `/run/${ENGINE_NAME}.pid`,
  /** In the command line of the containerd that engine starts. */
  containerdMarker: `/run/${ENGINE_NAME}/containerd/containerd.toml`,
};
const ENGINE_ENV = {
  ...process.env,
  SESSIONBOX_ENGINE2_NAME: ENGINE_NAME,
  SESSIONBOX_ENGINE2_BRIDGE: 'sbfaults0',
  SESSIONBOX_ENGINE2_CIDR: '10.213.214.1/24',
  SESSIONBOX_IMAGE: IMAGE,
};

class PrivateEngine {
  readonly docker = new Docker({ socketPath: ENGINE.sock });

  static available(): string | null {
    if (process.getuid?.() !== 0) return 'needs root to run a second dockerd';
    if (!has('dockerd') || !has('docker') || !has('ip')) return 'dockerd, docker or ip not installed';
    return null;
  }

  private script(cmd: 'start' | 'stop' | 'crash') {
    const r = spawnSync('bash', [join(ROOT, 'scripts/second-engine.sh'), cmd], { env: ENGINE_ENV, encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) throw new Error(`second-engine.sh ${cmd} failed: ${r.stderr}`);
  }

  pid(): number | null {
    try {
      const pid = Number(readFileSync(ENGINE.pidfile, 'utf8').trim());
      process.kill(pid, 0);
      return pid;
    } catch {
      return null;
    }
  }

  /** The engine's own containerd: it dies after a crashed dockerd, but not at once. */
  containerdPids(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(ENGINE.containerdMarker)) pids.push(Number(entry));
      } catch {
        // gone meanwhile
      }
    }
    return pids;
  }

  /** Starts it (its own socket, data root, exec root, bridge; no iptables) with the runner image loaded. */
  async start() {
    // a containerd left by a crash must be gone first, or the new one times out on its socket
    await waitFor(async () => this.containerdPids().length === 0, 30_000, 100);
    this.script('start');
  }

  /** SIGKILL to dockerd, as a crash: with live-restore off its containers are stopped when it starts again. */
  async crash() {
    this.script('crash');
    await waitFor(async () => this.containerdPids().length === 0, 30_000, 100);
  }

  async stop() {
    this.script('stop');
  }

  async containers(namespace: string) {
    return this.docker.listContainers({ all: true, filters: { label: [`sessionbox.namespace=${namespace}`] } });
  }

  async removeNamespace(namespace: string) {
    for (const c of await this.containers(namespace).catch(() => [])) {
      await this.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    }
  }
}

async function execution(base: string, sessionId: string, id: string) {
  const r = await call(base, 'GET', `/v1/sessions/${sessionId}/executions/${id}`);
  if (r.status !== 200) throw new Error(`GET execution: ${r.status} ${r.text}`);
  return r.body;
}

const finalStatus = (e: { status: string }) => ['succeeded', 'failed', 'timed_out'].includes(e.status);

// ---------------------------------------------------------------------------------------------------

describe('fault: a worker SIGKILLed mid-execution', () => {
  let sys: TestSystem;
  const workers: ChildWorker[] = [];

  beforeAll(async () => {
    sys = await startSystem({ SESSIONBOX_STALLED_INTERVAL_MS: '2000' }, { worker: false });
  });
  afterAll(async () => {
    for (const w of workers) await stopWorker(w);
    if (sys) await stopExpectingNoLeak(sys);
  });

  test('the run is stopped and fails with cause worker_lost, is never run twice, and the session carries on', async () => {
    const env = {
      SESSIONBOX_NAMESPACE: sys.config.namespace,
      SESSIONBOX_REDIS_URL: sys.config.redisUrl,
      SESSIONBOX_STALLED_INTERVAL_MS: '2000',
      SESSIONBOX_REAPER_INTERVAL_MS: '250',
    };
    const first = await spawnWorker(env);
    workers.push(first);
    const s = await sys.http.createSession();
    expect((await sys.http.run(s.id, 'kept = 41')).status).toBe('succeeded');

    // every start of the code leaves a line in starts.log; every 100 ms a tick in ticks.log
    const code = [
      'import os, time',
      "open('starts.log', 'a').write(f'start {time.time()}\\n')",
      'for i in range(300):',
      "    open('ticks.log', 'a').write(f'{i}\\n')",
      "    print('tick', i, flush=True)",
      '    time.sleep(0.1)',
    ].join('\n');
    const submitted = await sys.http.post(`/v1/sessions/${s.id}/executions`, { code, timeoutMs: 120_000 });
    expect(submitted.status).toBe(202);
    const execId: string = submitted.body.id;
    const ticks = async () => {
      const r = await call(sys.url, 'GET', `/v1/sessions/${s.id}/files/ticks.log`);
      return r.status === 200 ? r.text.split('\n').filter(Boolean).length : 0;
    };
    await waitFor(async () => (await execution(sys.url, s.id, execId)).status === 'running' && (await ticks()) >= 5, 30_000);

    first.proc.kill('SIGKILL');
    await first.exited;
    const second = await spawnWorker(env);
    workers.push(second);

    const ended = await waitFor(async () => {
      const e = await execution(sys.url, s.id, execId);
      return finalStatus(e) ? e : null;
    }, 60_000, 250);
    expect(ended.status).toBe('failed');
    expect(ended.cause).toBe('worker_lost');
    expect(ended.error.name).toBe('WorkerLost');
    expect(ended.error.value).toMatch(/stopped mid-run.*not run again/);
    expect(second.output.join('\n')).toContain('execution lost its worker');

    // the old run was stopped inside the container (the abort reached the supervisor): the file stops growing
    const n1 = await ticks();
    await sleep(1500);
    const n2 = await ticks();
    expect(n2).toBe(n1);
    expect(n1).toBeLessThan(300);
    // it started exactly once
    const starts = (await call(sys.url, 'GET', `/v1/sessions/${s.id}/files/starts.log`)).text.split('\n').filter(Boolean);
    expect(starts).toHaveLength(1);

    // the session works on, with its state (the kernel survived the abort)
    const next = await sys.http.run(s.id, 'print(kept + 1)');
    expect(next.status).toBe('succeeded');
    expect(next.stdout).toBe('42\n');
    expect((await sys.http.get(`/v1/sessions/${s.id}`)).body.status).toBe('ready');
    expect(await ticks()).toBe(n2); // still one run only
    expect((await sys.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    expect(await namespaceContainers(sys.config.namespace)).toHaveLength(0);
  });
});

describeIf(has('redis-server') ? null : 'redis-server is not installed here')('fault: Redis restarted', () => {
  let redis: PrivateRedis | null = null;
  let sys: TestSystem | null = null;

  beforeAll(async () => {
    redis = new PrivateRedis(await freePort());
    await redis.start();
    sys = await startSystem({ SESSIONBOX_REDIS_URL: redis.url });
  });
  afterAll(async () => {
    try {
      if (sys) await stopExpectingNoLeak(sys);
    } finally {
      await redis?.destroy();
    }
  });

  test('while Redis is away every route answers 503 redis_unavailable; it recovers without a restart', async () => {
    if (!sys || !redis) throw new Error('the system did not start');
    const http = sys.http;
    const s = await http.createSession();
    expect((await http.run(s.id, 'x = 1')).status).toBe('succeeded');

    await redis.stop();
    const attempts: [string, string, unknown?][] = [
      ['GET', '/healthz'],
      ['GET', '/v1/sessions'],
      ['POST', '/v1/sessions', {}],
      ['GET', `/v1/sessions/${s.id}`],
      ['POST', `/v1/sessions/${s.id}/executions?wait=true`, { code: 'print(1)' }],
      ['GET', `/v1/sessions/${s.id}/files`],
      ['DELETE', `/v1/sessions/${s.id}`],
      ['POST', '/v1/tools/execute_python', { code: 'print(1)' }],
      ['POST', '/v1/run/', { code: 'print(1)' }],
      ['POST', '/execute', { code: 'print(1)' }],
    ];
    const answers = await Promise.all(
      attempts.map(async ([method, path, body]) => {
        const r = await call(sys!.url, method, path, body);
        return { method, path, status: r.status, code: r.body?.error?.code };
      }),
    );
    for (const a of answers) expect(a).toEqual({ ...a, status: 503, code: 'redis_unavailable' });
    const health = await call(sys.url, 'GET', '/healthz');
    expect(health.body.checks.redis).toMatch(/^down/);
    // nothing was made while Redis was away
    expect(await namespaceContainers(sys.config.namespace)).toHaveLength(1);

    await redis.start();
    await waitFor(async () => (await call(sys!.url, 'GET', '/healthz')).status === 200, 30_000, 250);
    // the same API and worker, no restart: the session and its Python state are still there
    const again = await waitFor(async () => {
      const r = await call(sys!.url, 'POST', `/v1/sessions/${s.id}/executions?wait=true`, { code: 'print(x + 1)' });
      return r.status === 200 ? r.body : null;
    }, 30_000, 500);
    expect(again.stdout).toBe('2\n');
    const fresh = await http.createSession();
    expect((await http.run(fresh.id, 'print("back")')).stdout).toBe('back\n');
    expect((await http.delete(`/v1/sessions/${fresh.id}`)).status).toBe(204);
    expect((await http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    expect(await namespaceContainers(sys.config.namespace)).toHaveLength(0);
  });
});

describeIf(PrivateEngine.available())('fault: Docker engine restarted (a private engine)', () => {
  const engine = new PrivateEngine();
  let sys: TestSystem | null = null;

  beforeAll(async () => {
    await engine.start();
    sys = await startSystem({ SESSIONBOX_DOCKER_HOSTS: `faults=unix://${ENGINE.sock}` });
  }, 300_000);
  afterAll(async () => {
    await sys?.stop();
    if (sys) await engine.removeNamespace(sys.config.namespace);
    await engine.stop();
  }, 120_000);

  test('sessions whose containers stopped are marked terminated; new sessions work', async () => {
    if (!sys) throw new Error('the system did not start');
    const http = sys.http;
    const s1 = await http.createSession();
    const s2 = await http.createSession();
    expect((await http.run(s1.id, 'print("before")')).stdout).toBe('before\n');

    await engine.crash();
    const down = await call(sys.url, 'GET', '/healthz');
    expect(down.status).toBe(503);
    expect(down.body.error.code).toBe('docker_unavailable');
    const refused = await call(sys.url, 'POST', '/v1/sessions', {});
    expect(refused.status).toBe(503);
    expect(['docker_unavailable', 'container_start_failed', 'capacity_exhausted']).toContain(refused.body.error.code);

    await engine.start();
    for (const s of [s1, s2]) {
      let last = '';
      const gone = await waitFor(async () => {
        const r = await call(sys!.url, 'GET', `/v1/sessions/${s.id}`);
        last = `${r.status} ${r.text.slice(0, 200)}; containers: ${JSON.stringify((await engine.containers(sys!.config.namespace)).map((c) => c.State))}`;
        return r.status === 410 ? r : null;
      }, 60_000, 500).catch((err) => {
        throw new Error(`${(err as Error).message}: session ${s.id} still answers ${last}`);
      });
      expect(gone.body.error.code).toBe('session_terminated');
      // the worker's reaper (engine events, re-checked when the event stream comes back) or its host
      // monitor (host declared down after missed pings) ended it, whichever saw it first
      expect(gone.body.error.message).toMatch(/\((container_exited|container_removed|host_down)\)/);
    }
    // their containers are gone from the engine too
    await waitFor(async () => (await engine.containers(sys!.config.namespace)).length === 0, 30_000);

    const s3 = await http.createSession();
    expect((await http.run(s3.id, 'print("after")')).stdout).toBe('after\n');
    expect((await http.delete(`/v1/sessions/${s3.id}`)).status).toBe(204);
    expect(await engine.containers(sys.config.namespace)).toHaveLength(0);
  });
});

describe('fault: API restarted with executions queued', () => {
  const config = testConfig();
  let worker: RunningWorker;
  const apis: RunningApi[] = [];

  beforeAll(async () => {
    worker = await startWorker(config);
    apis.push(await startApi(config));
  });
  afterAll(async () => {
    for (const a of apis) await a.close();
    await worker?.close();
    await removeNamespace(config.namespace);
  });

  test('sessions are still listed and the queued executions complete, readable from the new API', async () => {
    const before = new Http(apis[0].url);
    const s = await before.createSession();
    const ids: string[] = [];
    for (const code of ['import time\ntime.sleep(2)\nx = 10\nprint("one")', 'x += 1\nprint(x)', 'print(x * 2)']) {
      const r = await before.post(`/v1/sessions/${s.id}/executions`, { code });
      expect(r.status).toBe(202);
      ids.push(r.body.id);
    }
    await apis.shift()!.close();

    const api = await startApi(config);
    apis.push(api);
    const after = new Http(api.url);
    expect((await after.get('/v1/sessions')).body.sessions.map((x: { id: string }) => x.id)).toEqual([s.id]);
    const done = await waitFor(async () => {
      const all = await Promise.all(ids.map((id) => execution(api.url, s.id, id)));
      return all.every(finalStatus) ? all : null;
    }, 60_000, 250);
    expect(done.map((e) => [e.status, e.stdout])).toEqual([
      ['succeeded', 'one\n'],
      ['succeeded', '11\n'],
      ['succeeded', '22\n'],
    ]);
    expect((await after.run(s.id, 'print(x)')).stdout).toBe('11\n');
    expect((await after.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    expect(await namespaceContainers(config.namespace)).toHaveLength(0);
  });
});

describe('fault: container killed from outside; engine refuses a create', () => {
  let sys: TestSystem;
  const KEY = 'faults-key-0123456789abcdef';
  const CAPPED_KEY = 'faults-capped-0123456789abc'; // one live session at most
  let http: Http;

  beforeAll(async () => {
    sys = await startSystem({ SESSIONBOX_API_KEYS: `faults:${KEY},capped:${CAPPED_KEY}:1` });
    http = new Http(sys.url, { authorization: `Bearer ${KEY}` });
  });
  // every session of this block was ended by a fault or a delete: none of their containers is left
  afterAll(() => sys && stopExpectingNoLeak(sys));

  const containerOf = async (sessionId: string) => {
    const [c] = await docker.listContainers({ all: true, filters: { label: [`sessionbox.session-id=${sessionId}`] } });
    return c;
  };

  test('docker kill on an idle session: the next call reports it, the record becomes terminated', async () => {
    const s = await http.createSession();
    await docker.getContainer((await containerOf(s.id)).Id).kill();
    // the very next call: either the run fails saying why, or the session is already known dead
    const r = await call(sys.url, 'POST', `/v1/sessions/${s.id}/executions?wait=true`, { code: 'print(1)' }, { authorization: `Bearer ${KEY}` });
    if (r.status === 200) {
      expect(r.body.status).toBe('failed');
      expect(r.body.cause).toBe('session_terminated');
      expect(r.body.error.value).toMatch(/container stopped/);
    } else {
      expect(r.status).toBe(410);
      expect(r.body.error.code).toBe('session_terminated');
    }
    const gone = await waitFor(async () => {
      const g = await http.get(`/v1/sessions/${s.id}`);
      return g.status === 410 ? g : null;
    }, 10_000);
    expect(gone.body.error.message).toMatch(/container_(exited|removed|gone)/);
    await waitFor(async () => !(await containerOf(s.id)), 10_000);
  });

  test('docker rm -f during a run: the run fails with a clear reason, no hang, the session is terminated', async () => {
    const s = await http.createSession();
    const code = "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.1)";
    const sub = await http.post(`/v1/sessions/${s.id}/executions`, { code });
    // its printed lines, as the API streams them (the execution's event log)
    const printed = async () =>
      (await sys.api.ctx.core.executionStore.readEvents(sub.body.id))
        .map(({ event }) => (event.type === 'stdout' ? event.data : ''))
        .join('');
    await waitFor(async () => (await printed()).includes('tick 3'), 30_000);
    await docker.getContainer((await containerOf(s.id)).Id).remove({ force: true });
    const ended = await waitFor(async () => {
      const e = (await http.get(`/v1/sessions/${s.id}/executions/${sub.body.id}`)).body;
      return finalStatus(e) ? e : null;
    }, 30_000, 250);
    expect(ended.status).toBe('failed');
    expect(ended.cause).toBe('session_terminated');
    expect(ended.error.value).toMatch(/container stopped during the run \((container_removed|container_exited)\)/);
    expect(ended.stdout).toContain('tick 3');
    expect((await http.get(`/v1/sessions/${s.id}`)).status).toBe(410);
    expect((await http.post(`/v1/sessions/${s.id}/executions`, { code: 'print(1)' })).status).toBe(410);
  });

  // the API caps limits.cpus at 64: a host with as many has no count the engine would refuse
  const tooMany = cpus().length + 1;
  testIf(tooMany > 64 ? 'this host has 64 or more CPUs' : null)('the engine refuses a create (more CPUs than the host has) → 503 container_start_failed, nothing half-made', async () => {
    const http = new Http(sys.url, { authorization: `Bearer ${CAPPED_KEY}` });
    const listed = async () => ((await http.get('/v1/sessions')).body.sessions as { id: string }[]).map((x) => x.id);
    const before = await listed();
    const r = await http.post('/v1/sessions', { limits: { cpus: tooMany } });
    expect(r.status).toBe(503);
    expect(r.body.error.code).toBe('container_start_failed');
    expect(r.body.error.message).toMatch(/CPU/i);
    expect(await namespaceContainers(sys.config.namespace)).toHaveLength(0);
    expect(await listed()).toEqual(before);
    // the key's one session slot was given back: a normal create still fits under its cap of 1
    const ok = await http.createSession();
    expect((await http.delete(`/v1/sessions/${ok.id}`)).status).toBe(204);
  });
});
