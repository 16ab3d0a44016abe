import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import IORedis from 'ioredis';
import { loadConfig } from '@sessionbox/core';
import { startApi, type RunningApi } from '../apps/api/src/server';
import { startWorker, type RunningWorker } from '../apps/worker/src/worker';
import { sleep } from './stats';

export const ROOT = path.resolve(__dirname, '..');
export const docker = new Docker({ socketPath: process.env.BENCH_DOCKER_SOCKET ?? '/var/run/docker.sock' });
export const REDIS_URL = process.env.SESSIONBOX_REDIS_URL ?? 'redis://127.0.0.1:6379';

export type Mode = 'processes' | 'in-process';

/** The api and worker under test, on a namespace of their own. */
export interface BenchSystem {
  url: string;
  namespace: string;
  mode: Mode;
  poolSize: number;
  /** Process ids of the api and the worker (this process in-process). */
  pids(): { api: number; worker: number };
  /** Stops the worker (its pool drains) and starts a new one with this pool size. */
  restartWorker(poolSize: number, lazySize?: number): Promise<void>;
  stop(): Promise<void>;
}

function baseEnv(namespace: string, port: number, poolSize: number, lazySize = 0): Record<string, string> {
  return {
    ...(process.env as Record<string, string>),
    SESSIONBOX_NAMESPACE: namespace,
    SESSIONBOX_PORT: String(port),
    SESSIONBOX_HOST: '127.0.0.1',
    SESSIONBOX_LOG_LEVEL: process.env.SESSIONBOX_LOG_LEVEL ?? 'warn',
    SESSIONBOX_POOL_SIZE: String(poolSize),
    SESSIONBOX_POOL_LAZY_SIZE: String(lazySize),
    SESSIONBOX_RECONCILE_ON_START: 'false',
    SESSIONBOX_ARCHIVE_DIR: path.join(tmpdir(), `sessionbox-bench-archives-${namespace}`),
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitHealthy(url: string, timeoutMs: number, alive: () => boolean) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (!alive()) throw new Error('a sessionbox process exited during start-up (see bench/results/*.log)');
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${url}/healthz did not answer within ${timeoutMs} ms`);
}

/** api and worker as two processes, as `npm start` runs them. */
async function startProcesses(namespace: string, poolSize: number, logDir: string): Promise<BenchSystem> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  mkdirSync(logDir, { recursive: true });
  const log = createWriteStream(path.join(logDir, `bench-${namespace}.log`), { flags: 'a' });
  const spawnApp = (app: 'api' | 'worker', pool: number, lazy = 0) => {
    const nodeFlags = (process.env.BENCH_NODE_OPTIONS ?? '').split(' ').filter(Boolean);
    const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', `apps/${app}/src/main.ts`], {
      cwd: ROOT,
      env: baseEnv(namespace, port, pool, lazy),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    return child;
  };
  const stopChild = async (c: ChildProcess) => {
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 45_000);
    await exited;
    clearTimeout(t);
  };
  let worker = spawnApp('worker', poolSize);
  const api = spawnApp('api', poolSize);
  await waitHealthy(url, 60_000, () => api.exitCode === null && worker.exitCode === null);
  const sys: BenchSystem = {
    url,
    namespace,
    mode: 'processes',
    poolSize,
    pids: () => ({ api: api.pid!, worker: worker.pid! }),
    async restartWorker(size, lazy) {
      await stopChild(worker);
      worker = spawnApp('worker', size, lazy);
      sys.poolSize = size;
      await sleep(500);
      if (worker.exitCode !== null) throw new Error('the worker exited during start-up');
    },
    async stop() {
      await Promise.all([stopChild(api), stopChild(worker)]);
      log.end();
    },
  };
  return sys;
}

/** api and worker in this process (like tests/helpers/system.ts): one event loop for client, api and worker. */
async function startInProcess(namespace: string, poolSize: number): Promise<BenchSystem> {
  const port = await freePort();
  const cfg = (size: number, lazy = 0) => loadConfig(baseEnv(namespace, port, size, lazy));
  let worker: RunningWorker = await startWorker(cfg(poolSize));
  const api: RunningApi = await startApi(cfg(poolSize));
  const sys: BenchSystem = {
    url: api.url,
    namespace,
    mode: 'in-process',
    poolSize,
    pids: () => ({ api: process.pid, worker: process.pid }),
    async restartWorker(size, lazy) {
      await worker.close();
      worker = await startWorker(cfg(size, lazy));
      sys.poolSize = size;
    },
    async stop() {
      await api.close();
      await worker.close();
    },
  };
  return sys;
}

export function startBenchSystem(p: { mode: Mode; namespace: string; poolSize: number; logDir: string }): Promise<BenchSystem> {
  return p.mode === 'processes' ? startProcesses(p.namespace, p.poolSize, p.logDir) : startInProcess(p.namespace, p.poolSize);
}

/** Containers of a namespace (every container the system made carries the namespace label). */
export async function namespaceContainers(namespace: string) {
  return docker.listContainers({ all: true, filters: { label: [`sessionbox.namespace=${namespace}`] } });
}

/** Removes every container and Redis key of the namespace, and the bench's own baseline containers. */
export async function cleanupNamespace(namespace: string): Promise<number> {
  const containers = [
    ...(await namespaceContainers(namespace)),
    ...(await docker.listContainers({ all: true, filters: { label: [`sessionbox-bench=${namespace}`] } })),
  ];
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  const redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `sb:${namespace}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return containers.length;
}
