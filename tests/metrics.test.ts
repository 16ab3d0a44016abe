import { Writable } from 'node:stream';
import pino from 'pino';
import { startApi, type RunningApi } from '../apps/api/src/server';
import { startWorker, type RunningWorker } from '../apps/worker/src/worker';
import { Http, removeNamespace, testConfig, waitFor } from './helpers/system';

/** Every JSON log line both processes write. */
const logLines: Record<string, any>[] = [];
const sink = new Writable({
  write(chunk, _enc, cb) {
    for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logLines.push(JSON.parse(line));
    cb();
  },
});
const logger = pino({ level: 'info' }, sink);

/** The value of one series in Prometheus text format, or undefined when it is not there. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('metrics', () => {
  let worker: RunningWorker;
  let api: RunningApi;
  let http: Http;
  let namespace: string;

  beforeAll(async () => {
    const config = testConfig({ SESSIONBOX_WORKER_METRICS_PORT: '0' });
    namespace = config.namespace;
    worker = await startWorker(config, { logger });
    api = await startApi(config, { logger });
    http = new Http(api.url);
  });

  afterAll(async () => {
    await api?.close();
    await worker?.close();
    await removeNamespace(namespace);
  });

  const apiMetrics = async () => {
    const r = await http.get('/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return r.raw.toString('utf8');
  };
  const workerMetrics = async () => {
    const r = await fetch(`${worker.http!.url}/metrics`);
    expect(r.status).toBe(200);
    return r.text();
  };

  test('GET /metrics reports live sessions per host and status, pool size and host state, read from Redis', async () => {
    const a = await http.createSession();
    const b = await http.createSession();
    let text = await apiMetrics();
    expect(sample(text, 'sessionbox_sessions_live', { host: 'local', status: 'ready' })).toBe(2);
    expect(sample(text, 'sessionbox_sessions_live', { host: 'local', status: 'busy' })).toBe(0);
    expect(sample(text, 'sessionbox_pool_size', { host: 'local' })).toBe(0);
    expect(sample(text, 'sessionbox_host_up', { host: 'local' })).toBe(1);
    expect(sample(text, 'sessionbox_session_create_seconds_count', { host: 'local', warm: 'false' })).toBe(2);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);

    // A running cell makes its session busy, and the gauge follows without any process telling it.
    const run = await http.post(`/v1/sessions/${a.id}/executions`, { code: 'import time\ntime.sleep(3)' });
    expect(run.status).toBe(202);
    text = await waitFor(async () => {
      const t = await apiMetrics();
      return sample(t, 'sessionbox_sessions_live', { host: 'local', status: 'busy' }) === 1 ? t : null;
    }, 15_000);
    expect(sample(text, 'sessionbox_sessions_live', { host: 'local', status: 'ready' })).toBe(1);

    // The host flag in Redis (set by a worker's host monitor) shows as host_up 0.
    await api.ctx.core.sessionStore.setHostDown('local', true);
    try {
      expect(sample(await apiMetrics(), 'sessionbox_host_up', { host: 'local' })).toBe(0);
    } finally {
      await api.ctx.core.sessionStore.setHostDown('local', false);
    }

    expect((await http.delete(`/v1/sessions/${b.id}`)).status).toBe(204);
    text = await apiMetrics();
    expect(sample(text, 'sessionbox_sessions_live', { host: 'local', status: 'busy' })).toBe(1);
    expect(sample(text, 'sessionbox_sessions_live', { host: 'local', status: 'ready' })).toBe(0);
    expect(sample(text, 'sessionbox_sessions_terminated_total', { reason: 'deleted' })).toBe(1);
    expect(sample(text, 'sessionbox_container_remove_seconds_count', { host: 'local' })).toBe(1);
  });

  test("the worker's /metrics counts executions by outcome, timeouts, queue wait and run time", async () => {
    const s = await http.createSession();
    const ok = await http.run(s.id, 'print(6 * 7)');
    expect(ok.status).toBe('succeeded');
    const slow = await http.run(s.id, 'import time\ntime.sleep(30)', 1000);
    expect(slow.status).toBe('timed_out');

    const text = await workerMetrics();
    expect(sample(text, 'sessionbox_executions_total', { status: 'succeeded', cause: 'none' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'sessionbox_executions_total', { status: 'timed_out', cause: 'timeout' })).toBe(1);
    expect(sample(text, 'sessionbox_timeouts_total')).toBe(1);
    expect(sample(text, 'sessionbox_oom_kills_total')).toBe(0);
    expect(sample(text, 'sessionbox_execution_queue_wait_seconds_count')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'sessionbox_execution_run_seconds_count')).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'sessionbox_execution_run_seconds_bucket', { le: '+Inf' })).toBe(sample(text, 'sessionbox_execution_run_seconds_count'));

    const health = await fetch(`${worker.http!.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', host: 'local', checks: { redis: 'ok', engine: 'up' } });
    const other = await fetch(`${worker.http!.url}/v1/sessions`);
    expect(other.status).toBe(404);
  });

  test('logs carry the session, execution, host and container ids', async () => {
    const s = await http.createSession();
    const exec = await http.run(s.id, 'x = 1');
    const rec = await api.ctx.core.sessionStore.get(s.id);
    const created = logLines.find((l) => l.msg === 'session created' && l.sessionId === s.id);
    expect(created).toMatchObject({ host: 'local', containerId: rec!.containerId });
    const finished = await waitFor(async () => logLines.find((l) => l.msg === 'execution finished' && l.executionId === exec.id), 5000);
    expect(finished).toMatchObject({ sessionId: s.id, host: 'local', containerId: rec!.containerId, status: 'succeeded', cause: null });
    expect(typeof finished.runMs).toBe('number');
    expect(typeof finished.queueMs).toBe('number');
  });
});
