import Docker from 'dockerode';
import IORedis from 'ioredis';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '@sessionbox/core';
import { startApi, type RunningApi } from '../../apps/api/src/server';
import { startWorker, type RunningWorker } from '../../apps/worker/src/worker';

export const docker = new Docker({ socketPath: '/var/run/docker.sock' });
export const REDIS_URL = process.env.SESSIONBOX_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Archives of expired sessions go here in tests (not /var/lib/sessionbox); `removeNamespace` clears its part. */
export const TEST_ARCHIVE_DIR = join(tmpdir(), 'sessionbox-test-archives');

export function testNamespace(tag = 't'): string {
  return `${tag}-${Math.random().toString(36).slice(2, 10)}`;
}

export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    ...process.env,
    SESSIONBOX_NAMESPACE: testNamespace(),
    SESSIONBOX_PORT: '0',
    SESSIONBOX_LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    SESSIONBOX_REAPER_INTERVAL_MS: '250',
    SESSIONBOX_RECONCILE_ON_START: 'false',
    SESSIONBOX_ARCHIVE_DIR: TEST_ARCHIVE_DIR,
    ...env,
  });
}

export interface TestSystem {
  config: Config;
  api: RunningApi;
  worker: RunningWorker | null;
  url: string;
  http: Http;
  /**
   * Closes the api and the worker (which remove what they made themselves, such as warm containers),
   * then removes every container and key of the namespace. Returns the containers that were still
   * there before that removal: after tests that end their sessions, each one is a leak.
   */
  stop(): Promise<Docker.ContainerInfo[]>;
}

/** A real api and worker on a namespace of their own; `stop` removes every container and key it made. */
export async function startSystem(env: Record<string, string> = {}, opts: { worker?: boolean } = {}): Promise<TestSystem> {
  const config = testConfig(env);
  const worker = opts.worker === false ? null : await startWorker(config);
  const api = await startApi(config);
  return {
    config,
    api,
    worker,
    url: api.url,
    http: new Http(api.url),
    async stop() {
      try {
        await api.close();
        await worker?.close();
        return await namespaceContainers(config.namespace);
      } finally {
        await removeNamespace(config.namespace);
      }
    },
  };
}

export async function namespaceContainers(namespace: string) {
  return docker.listContainers({ all: true, filters: { label: [`sessionbox.namespace=${namespace}`] } });
}

export async function removeNamespace(namespace: string) {
  for (const c of await namespaceContainers(namespace)) {
    await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  }
  const redis = new IORedis(REDIS_URL);
  rmSync(join(TEST_ARCHIVE_DIR, namespace), { recursive: true, force: true });
  const keys = await redis.keys(`sb:${namespace}:*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
}

export interface HttpResult<T = any> {
  status: number;
  headers: Headers;
  body: T;
  raw: Buffer;
}

/** A thin fetch wrapper: JSON in, JSON (or bytes) out. */
export class Http {
  constructor(readonly base: string, readonly headers: Record<string, string> = {}) {}

  async request<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult<T>> {
    const init: RequestInit = { method, headers: { ...this.headers, ...headers } };
    if (body !== undefined) {
      if (typeof body === 'string' || Buffer.isBuffer(body)) init.body = body as string;
      else {
        init.body = JSON.stringify(body);
        (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
      }
    }
    const res = await fetch(this.base + path, init);
    const raw = Buffer.from(await res.arrayBuffer());
    const ct = res.headers.get('content-type') ?? '';
    const parsed = ct.includes('json') && raw.length ? JSON.parse(raw.toString('utf8')) : raw;
    return { status: res.status, headers: res.headers, body: parsed as T, raw };
  }
  get<T = any>(path: string, headers?: Record<string, string>) {
    return this.request<T>('GET', path, undefined, headers);
  }
  post<T = any>(path: string, body?: unknown, headers?: Record<string, string>) {
    return this.request<T>('POST', path, body, headers);
  }
  put<T = any>(path: string, body?: unknown, headers?: Record<string, string>) {
    return this.request<T>('PUT', path, body, headers);
  }
  delete<T = any>(path: string, headers?: Record<string, string>) {
    return this.request<T>('DELETE', path, undefined, headers);
  }

  async createSession(body: Record<string, unknown> = {}) {
    const r = await this.post('/v1/sessions', body);
    if (r.status !== 201) throw new Error(`create session: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as { id: string; [k: string]: any };
  }

  async run(sessionId: string, code: string, timeoutMs?: number) {
    const r = await this.post(`/v1/sessions/${sessionId}/executions?wait=true`, { code, ...(timeoutMs ? { timeoutMs } : {}) });
    if (r.status !== 200) throw new Error(`execute: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as any;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs: number, stepMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

/** PNG width/height from the IHDR chunk. */
export function pngSize(buf: Buffer): { width: number; height: number } {
  if (buf.subarray(0, 8).toString('hex') !== '89504e470d0a1a0a') throw new Error('not a PNG');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

/** One line per container, enough to find the test that left it. */
export function describeContainers(list: Docker.ContainerInfo[]): string[] {
  return list.map((c) => `${c.Names[0]} (${c.State}, session ${c.Labels['sessionbox.session-id'] ?? '?'})`);
}

/** Stops the system (cleaning up whatever happens) and fails if a container of its namespace was left. */
export async function stopExpectingNoLeak(sys: TestSystem): Promise<void> {
  const left = await sys.stop();
  expect({ leftBehind: describeContainers(left) }).toEqual({ leftBehind: [] });
}

/**
 * Starts a system before the file's tests (or before each test, with `per: 'test'`) and stops it
 * after, failing when one of its containers is left; the returned object stands for the running system.
 */
export function useSystem(env: Record<string, string> = {}, opts: { worker?: boolean; per?: 'file' | 'test' } = {}): TestSystem {
  let current: TestSystem | null = null;
  const [before, after] = opts.per === 'test' ? [beforeEach, afterEach] : [beforeAll, afterAll];
  before(async () => {
    current = await startSystem(env, opts);
  });
  after(async () => {
    if (!current) return;
    const sys = current;
    current = null;
    await stopExpectingNoLeak(sys);
  });
  return new Proxy({} as TestSystem, {
    get(_, key) {
      if (!current) throw new Error('the test system is not started yet (use it inside tests or hooks)');
      return current[key as keyof TestSystem];
    },
  });
}

/** Under CI=true a missing prerequisite is an error, not a skip. */
const inCi = () => process.env.CI === 'true';

/**
 * `describe` when `missing` is null. Otherwise the block is skipped (jest reports it skipped, with the
 * reason in its name), or, under CI=true, replaced by one test that fails naming what is missing.
 * Decided at collection time, so no hook of the block runs when it is skipped.
 */
export function describeIf(missing: string | null) {
  return (name: string, fn: () => void) => {
    if (!missing) return describe(name, fn);
    if (inCi()) {
      return describe(name, () => {
        test('has its prerequisites', () => {
          throw new Error(`missing prerequisite under CI=true: ${missing}`);
        });
      });
    }
    return describe.skip(`${name} [skipped: ${missing}]`, fn);
  };
}

/** The same for one test. */
export function testIf(missing: string | null) {
  return (name: string, fn: jest.ProvidesCallback, timeout?: number) => {
    if (!missing) return test(name, fn, timeout);
    if (inCi()) {
      return test(name, () => {
        throw new Error(`missing prerequisite under CI=true: ${missing}`);
      });
    }
    return test.skip(`${name} [skipped: ${missing}]`, fn);
  };
}

/** A 429 naming the limit and its value, with a Retry-After (the per-key caps and budgets). */
export function expectRateLimited(r: { status: number; body: any; headers: Headers }, limit: string, max: number) {
  expect(r.status).toBe(429);
  expect(r.body.error).toMatchObject({ code: 'rate_limited', limit, max });
  expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
}
