import pino from 'pino';
import { CloseSteps } from '@sessionbox/core';
import { startApi, type RunningApi } from '../apps/api/src/server';
import { startWorker, type RunningWorker } from '../apps/worker/src/worker';
import { Http, namespaceContainers, removeNamespace, testConfig, waitFor } from './helpers/system';

/**
 * Shutdown drains, on the real engine and Redis: the worker stops taking jobs before anything else,
 * the API lets requests under way finish, `close()` keeps its promise, and a failing step does not
 * keep the others from closing.
 */

function captureLogger() {
  const lines: { msg: string; step?: string; err?: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

async function executionStatus(http: Http, sessionId: string, id: string) {
  const r = await http.get(`/v1/sessions/${sessionId}/executions/${id}`);
  expect(r.status).toBe(200);
  return r.body as { status: string; stdout: string };
}

describe('shutdown: the worker stops taking jobs first', () => {
  // A warm pool makes the rest of the worker's shutdown slow (it waits for creations under way and
  // removes its containers), as in production: intake must stop before that, not after.
  const config = testConfig({ SESSIONBOX_POOL_SIZE: '1', SESSIONBOX_SHUTDOWN_GRACE_MS: '60000' });
  let api: RunningApi;
  const workers: RunningWorker[] = [];

  beforeAll(async () => {
    workers.push(await startWorker(config));
    api = await startApi(config);
  });
  afterAll(async () => {
    await api?.close();
    for (const w of workers) await w.close();
    await removeNamespace(config.namespace);
  });

  test('a job queued during close is not taken by the closing worker; the running one finishes; the next worker runs it', async () => {
    const http = new Http(api.url);
    const [a, b] = [await http.createSession(), await http.createSession()];
    const first = workers[0];

    const long = await http.post(`/v1/sessions/${a.id}/executions`, { code: 'import time\ntime.sleep(3)\nprint("drained")' });
    expect(long.status).toBe(202);
    await waitFor(async () => (await executionStatus(http, a.id, long.body.id)).status === 'running', 30_000, 50);

    const closing = first.close();
    const queued = await http.post(`/v1/sessions/${b.id}/executions`, { code: 'print("after")' });
    expect(queued.status).toBe(202);
    await closing;

    // The job under way was let finish; the one queued during close was left for someone else.
    expect(await executionStatus(http, a.id, long.body.id)).toMatchObject({ status: 'succeeded', stdout: 'drained\n' });
    expect((await executionStatus(http, b.id, queued.body.id)).status).toBe('queued');

    const next = await startWorker(config);
    workers.push(next);
    const done = await waitFor(async () => {
      const r = await http.get(`/v1/sessions/${b.id}/executions/${queued.body.id}`);
      return r.body.status === 'succeeded' ? r.body : null;
    }, 60_000, 100);
    expect(done.stdout).toBe('after\n');
    const rec = await next.core.executionStore.get(queued.body.id);
    expect(rec?.workerId).toBe(next.workerId);
    expect(next.workerId).not.toBe(first.workerId);

    for (const s of [a, b]) expect((await http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    await next.close();
    expect(await namespaceContainers(config.namespace)).toHaveLength(0);
  });
});

describe('shutdown: the API lets requests under way finish', () => {
  const config = testConfig({ SESSIONBOX_SHUTDOWN_GRACE_MS: '60000' });
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

  test('an in-flight ?wait=true answers 200 with its result and an event stream reaches `done` while the API closes', async () => {
    const api = apis[0];
    const http = new Http(api.url);
    const [a, b] = [await http.createSession(), await http.createSession()];
    const code = 'import time\ntime.sleep(2)\nprint("finished")';

    const waited = http.post(`/v1/sessions/${a.id}/executions?wait=true`, { code });
    const stream = fetch(`${api.url}/v1/sessions/${b.id}/executions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ code }),
    });
    const streamed = await stream;
    expect(streamed.status).toBe(200);
    const body = streamed.text();
    // Both runs have started before the API is told to close.
    await waitFor(async () => {
      const [ra, rb] = await Promise.all([worker.core.executionStore.listForSession(a.id), worker.core.executionStore.listForSession(b.id)]);
      return ra[0]?.status === 'running' && rb[0]?.status === 'running';
    }, 30_000, 50);

    const closing = api.close();
    // New requests are refused (a new connection finds nothing listening; a kept-alive one gets 503).
    const late = await fetch(`${api.url}/v1/sessions`).then(
      async (r) => ({ status: r.status, code: ((await r.json()) as { error: { code: string } }).error.code }),
      () => ({ status: 'refused', code: 'refused' }),
    );
    expect([{ status: 503, code: 'shutting_down' }, { status: 'refused', code: 'refused' }]).toContainEqual(late);

    const w = await waited;
    expect(w.status).toBe(200);
    expect(w.body).toMatchObject({ status: 'succeeded', stdout: 'finished\n' });
    const text = await body;
    expect(text).toContain('event: done');
    expect(text).toContain('"stdout":"finished\\n"');
    await closing;

    const next = await startApi(config);
    apis.push(next);
    const h2 = new Http(next.url);
    for (const s of [a, b]) expect((await h2.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    expect(await namespaceContainers(config.namespace)).toHaveLength(0);
  });
});

describe('shutdown: close() is idempotent and isolates each step', () => {
  test('close() twice, and after it ended, returns the same promise (worker and API)', async () => {
    const config = testConfig();
    const worker = await startWorker(config);
    const api = await startApi(config);
    try {
      const a1 = api.close();
      expect(api.close()).toBe(a1);
      const w1 = worker.close();
      expect(worker.close()).toBe(w1);
      await Promise.all([a1, w1]);
      expect(api.close()).toBe(a1);
      expect(worker.close()).toBe(w1);
    } finally {
      await removeNamespace(config.namespace);
    }
  });

  test('a reaper stopped before the engine answered its subscription leaves no event stream open', async () => {
    const config = testConfig();
    // The reaper subscribes to the engine's events in the background; a stop() that comes before
    // the engine answers must still end that stream, or its socket keeps the process alive.
    const eventStreams = () =>
      (process as unknown as { _getActiveHandles(): { _httpMessage?: { path?: string } }[] })
        ._getActiveHandles()
        .filter((h) => h._httpMessage?.path?.startsWith('/events') && h._httpMessage.path.includes(config.namespace));
    const worker = await startWorker(config);
    try {
      await worker.reaper.stop();
      for (let i = 0; i < 3; i++) {
        worker.reaper.start();
        await worker.reaper.stop();
      }
      await worker.close();
      expect(eventStreams()).toHaveLength(0);
    } finally {
      await worker.close();
      await removeNamespace(config.namespace);
    }
  });

  test('a worker step that throws is logged and the later steps still close', async () => {
    const config = testConfig();
    const { logger, lines } = captureLogger();
    const worker = await startWorker(config, { logger });
    const realStop = worker.monitor.stop.bind(worker.monitor);
    worker.monitor.stop = async () => {
      throw new Error('monitor broke');
    };
    try {
      await worker.close();
      expect(lines).toContainEqual(expect.objectContaining({ msg: 'shutdown step failed', step: 'host monitor', err: 'monitor broke' }));
      // Steps before and after the broken one ran: intake closed, Redis released.
      expect(worker.worker.closing).not.toBeNull();
      expect(worker.worker.isRunning()).toBe(false);
      await expect(worker.core.redis.ping()).rejects.toThrow(/Connection is closed/);
    } finally {
      // The broken step left the real monitor running; stop it so that nothing outlives the test.
      await realStop();
      await removeNamespace(config.namespace);
    }
  });

  test('an API step that throws is logged and the later steps still close', async () => {
    const config = testConfig();
    const { logger, lines } = captureLogger();
    const api = await startApi(config, { logger });
    const realClose = api.ctx.queues.close.bind(api.ctx.queues);
    api.ctx.queues.close = async () => {
      throw new Error('queues broke');
    };
    try {
      await api.close();
      expect(lines).toContainEqual(expect.objectContaining({ msg: 'shutdown step failed', step: 'queues', err: 'queues broke' }));
      expect(api.server.listening).toBe(false);
      await expect(api.ctx.core.redis.ping()).rejects.toThrow(/Connection is closed/);
    } finally {
      // The broken step left the real queues open; close them so that nothing outlives the test.
      await realClose();
      await removeNamespace(config.namespace);
    }
  });

  test('CloseSteps: every step runs once, in order, whatever the others do', async () => {
    const { logger, lines } = captureLogger();
    const ran: string[] = [];
    const steps = new CloseSteps(logger)
      .add('one', () => void ran.push('one'))
      .add('two', () => {
        ran.push('two');
        throw new Error('two broke');
      })
      .add('three', async () => void ran.push('three'));
    await Promise.all([steps.close(), steps.close()]);
    await steps.close();
    expect(ran).toEqual(['one', 'two', 'three']);
    expect(steps.failures).toEqual([{ step: 'two', error: 'two broke' }]);
    expect(lines.filter((l) => l.msg === 'shutdown step failed')).toHaveLength(1);
  });
});
