import { parseSse } from '@sessionbox/client';
import { pngSize, useSystem, waitFor } from './helpers/system';

const sys = useSystem();
/** Each test's own session: no test depends on the state another one left. */
let sid: string;

beforeEach(async () => {
  sid = (await sys.http.createSession()).id;
});
afterEach(async () => {
  expect((await sys.http.delete(`/v1/sessions/${sid}`)).status).toBe(204);
});

interface Received {
  event: string;
  id: string | undefined;
  data: any;
  arrivedAt: number;
}

async function collect(res: Response): Promise<Received[]> {
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const out: Received[] = [];
  for await (const m of parseSse(res.body!)) out.push({ event: m.event, id: m.id, data: JSON.parse(m.data), arrivedAt: Date.now() });
  return out;
}

const PRINT_SLEEP_PRINT = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second')";

/** POST with Accept: text/event-stream; the response and every event it carried. */
async function streamed(code: string) {
  const res = await fetch(`${sys.url}/v1/sessions/${sid}/executions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ code }),
  });
  return { res, live: await collect(res) };
}

describe('SSE streaming of executions', () => {
  test('POST with Accept: text/event-stream streams chunks while the code runs, then done with the whole Execution', async () => {
    const { res, live } = await streamed(PRINT_SLEEP_PRINT);
    expect(live.map((e) => e.event)).toEqual(['started', 'stdout', 'stdout', 'done']);
    const [started, first, second, done] = live;
    const executionId = done.data.id;
    expect(res.headers.get('location')).toBe(`${sys.url}/v1/sessions/${sid}/executions/${executionId}/events`);
    expect(started.data.executionId).toBe(executionId);
    expect(first.data.text).toBe('first\n');
    expect(second.data.text).toBe('second\n');
    expect(done.data).toMatchObject({ id: executionId, sessionId: sid, status: 'succeeded', stdout: 'first\nsecond\n' });
    // The first chunk reached us before the run had even finished (the code slept 1 s after printing it).
    const finishedAt = Date.parse(done.data.finishedAt);
    console.log(`first stdout arrived ${finishedAt - first.arrivedAt} ms before finishedAt`);
    expect(first.arrivedAt).toBeLessThan(finishedAt);
    expect(first.arrivedAt).toBeLessThan(done.arrivedAt);
    // ids are Redis stream entry ids, strictly increasing.
    for (const e of live) expect(e.id).toMatch(/^\d+-\d+$/);
  });

  test('a client that connects after the end gets the full replay; Last-Event-ID resumes after that event', async () => {
    const { live } = await streamed(PRINT_SLEEP_PRINT);
    expect(live.map((e) => e.event)).toEqual(['started', 'stdout', 'stdout', 'done']);
    const executionId = live[3].data.id;
    const url = `${sys.url}/v1/sessions/${sid}/executions/${executionId}/events`;
    const replay = await collect(await fetch(url));
    expect(replay.map((e) => [e.event, e.id, e.data])).toEqual(live.map((e) => [e.event, e.id, e.data]));
    const got = await sys.http.get(`/v1/sessions/${sid}/executions/${executionId}`);
    expect(replay.at(-1)!.data).toEqual(got.body);

    const resumed = await collect(await fetch(url, { headers: { 'Last-Event-ID': live[1].id! } }));
    expect(resumed.map((e) => e.id)).toEqual(live.slice(2).map((e) => e.id));
    expect(resumed[0].data.text).toBe('second\n');
  });

  test('GET /events attached while the run is queued or running sees everything from the start, figures included', async () => {
    const q = await sys.http.post(`/v1/sessions/${sid}/executions`, {
      code: "import matplotlib.pyplot as plt\nprint('plotting')\nplt.plot([1, 2, 3])\nplt.show()\nprint('after')",
    });
    expect(q.status).toBe(202);
    const events = await collect(await fetch(`${sys.url}/v1/sessions/${sid}/executions/${q.body.id}/events`));
    // Output and figures travel on different pipes in the container: their relative order is not fixed.
    const names = events.map((e) => e.event).filter((e) => e !== 'figure');
    expect([names[0], names.at(-1), new Set(names.slice(1, -1))]).toEqual(['started', 'done', new Set(['stdout'])]);
    expect(events.flatMap((e) => (e.event === 'stdout' ? [e.data.text] : [])).join('')).toBe('plotting\nafter\n');
    const figures = events.filter((e) => e.event === 'figure');
    expect(figures).toHaveLength(1);
    const fig = figures[0].data;
    expect(fig).toMatchObject({ mimeType: 'image/png', url: `${sys.url}/v1/sessions/${sid}/figures/${fig.id}` });
    expect(events.at(-1)!.data.figures).toEqual([fig]);
    const png = await fetch(fig.url);
    expect(png.headers.get('content-type')).toBe('image/png');
    expect(pngSize(Buffer.from(await png.arrayBuffer()))).toEqual({ width: fig.width, height: fig.height });
  });

  test('a client that hangs up mid-run leaves no listener behind', async () => {
    const aborter = new AbortController();
    const res = await fetch(`${sys.url}/v1/sessions/${sid}/executions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ code: "import time\nprint('x', flush=True)\ntime.sleep(1.5)" }),
      signal: aborter.signal,
    });
    const listeners = (sys.api.ctx.events as unknown as { listeners: Map<string, Set<unknown>> }).listeners;
    const it = parseSse(res.body!);
    while ((await it.next()).value?.event !== 'stdout');
    expect(listeners.size).toBe(1);
    aborter.abort();
    await waitFor(async () => listeners.size === 0, 5000, 20);
    // The run itself goes on to its end.
    const id = res.headers.get('location')!.split('/').at(-2)!;
    const done = await waitFor(async () => {
      const e = (await sys.http.get(`/v1/sessions/${sid}/executions/${id}`)).body;
      return ['queued', 'running'].includes(e.status) ? null : e;
    }, 30_000);
    expect(done).toMatchObject({ status: 'succeeded', stdout: 'x\n' });
  });

  test('bad requests get JSON errors, not a stream', async () => {
    const base = `/v1/sessions/${sid}/executions`;
    const unknown = await sys.http.get(`/v1/sessions/${sid}/executions/00000000-0000-4000-8000-000000000000/events`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('execution_not_found');
    const badId = await sys.http.get(`/v1/sessions/${sid}/executions/00000000-0000-4000-8000-000000000000/events`, { 'Last-Event-ID': 'nope' });
    expect(badId.status).toBe(400);
    expect(badId.body.error.code).toBe('invalid_request');
    const badBody = await sys.http.post(base, { code: 1 }, { accept: 'text/event-stream' });
    expect(badBody.status).toBe(400);
    expect(badBody.body.error.message).toMatch(/^code:/);
  });
});
