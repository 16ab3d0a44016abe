import { SessionboxApiError, SessionboxClient, type StreamEvent } from '@sessionbox/client';
import { pngSize, startSystem, stopExpectingNoLeak, type TestSystem } from './helpers/system';

let sys: TestSystem;
let client: SessionboxClient;
const sent: { url: string; auth: string | null }[] = [];

beforeAll(async () => {
  sys = await startSystem();
  const spy: typeof fetch = (input, init) => {
    sent.push({ url: String(input), auth: new Headers(init?.headers).get('authorization') });
    return fetch(input, init);
  };
  client = new SessionboxClient({ baseUrl: `${sys.url}/`, apiKey: 'sb-key', fetch: spy });
});
afterAll(() => sys && stopExpectingNoLeak(sys));

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('SessionboxClient against the real API', () => {
  /** Each test's own session, ended after it (a test may end it itself). */
  let sid: string;
  beforeEach(async () => {
    sid = (await sys.http.createSession()).id;
  });
  afterEach(async () => {
    expect([204, 410]).toContain((await sys.http.delete(`/v1/sessions/${sid}`)).status);
  });

  test('sessions: create, get, list by metadata, execute (wait and queued), getExecution', async () => {
    const s = await client.createSession({ metadata: { suite: 'client' }, limits: { memoryMb: 256 } });
    const sid = s.id;
    expect(s).toMatchObject({ status: 'ready', metadata: { suite: 'client' }, limits: { memoryMb: 256 } });
    expect((await client.getSession(sid)).id).toBe(sid);
    expect((await client.listSessions({ metadata: { suite: 'client' } })).map((x) => x.id)).toEqual([sid]);
    expect(await client.listSessions({ metadata: { suite: 'other' } })).toEqual([]);

    const ex = await client.execute(sid, 'x = 6 * 7\nprint("x is", x)\nx');
    expect(ex).toMatchObject({ sessionId: sid, status: 'succeeded', stdout: 'x is 42\n', result: '42' });
    const q = await client.execute(sid, 'x + 1', { wait: false });
    expect(q).toEqual({ id: expect.any(String), sessionId: sid, status: 'queued' });
    const later = await client.streamEvents(sid, q.id).next();
    expect(later.value).toMatchObject({ type: 'started', executionId: q.id });
    const got = await client.getExecution(sid, q.id);
    expect(got.id).toBe(q.id);
    expect(sent.every((r) => r.auth === 'Bearer sb-key')).toBe(true);
    await client.deleteSession(sid);
  });

  test('streamExecution yields typed events as they happen; getFigure returns the PNG; streamEvents resumes', async () => {
    const code = "import matplotlib.pyplot as plt\nprint('a', flush=True)\nplt.plot([3, 1, 2])\nplt.show()\nprint('b')";
    const events: StreamEvent[] = await all(client.streamExecution(sid, code, { timeoutMs: 20_000 }));
    // Output and figures travel on different pipes in the container: their relative order is not fixed.
    const types = events.map((e) => e.type).filter((t) => t !== 'figure');
    expect([types[0], types.at(-1), new Set(types.slice(1, -1))]).toEqual(['started', 'done', new Set(['stdout'])]);
    expect(events.filter((e) => e.type === 'figure')).toHaveLength(1);
    const done = events.at(-1) as Extract<StreamEvent, { type: 'done' }>;
    const figAt = events.findIndex((e) => e.type === 'figure');
    const fig = events[figAt] as Extract<StreamEvent, { type: 'figure' }>;
    expect(done.execution).toMatchObject({ status: 'succeeded', stdout: 'a\nb\n', timeoutMs: 20_000 });
    expect(done.execution.figures).toEqual([fig.figure]);
    expect(events.flatMap((e) => (e.type === 'stdout' ? [e.text] : [])).join('')).toBe('a\nb\n');

    const png = await client.getFigure(fig.figure.url);
    expect(Buffer.isBuffer(png)).toBe(true);
    expect(pngSize(png)).toEqual({ width: fig.figure.width, height: fig.figure.height });
    const relative = await client.getFigure(new URL(fig.figure.url).pathname);
    expect(relative.equals(png)).toBe(true);

    const rest = await all(client.streamEvents(sid, done.execution.id, { lastEventId: events[figAt].id }));
    expect(rest.map((e) => e.id)).toEqual(events.slice(figAt + 1).map((e) => e.id));
  });

  test('the API key goes to the API\'s own origin only', async () => {
    const ex = await client.execute(sid, 'import matplotlib.pyplot as plt\nplt.plot([1])');
    const foreign = ex.figures[0].url.replace('127.0.0.1', 'localhost');
    sent.length = 0;
    expect(pngSize(await client.getFigure(foreign)).width).toBeGreaterThan(0);
    expect(sent).toEqual([{ url: foreign, auth: null }]);
  });

  test('errors are SessionboxApiError { status, code, message }', async () => {
    const err = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e);
    const missing = await err(client.getSession('00000000-0000-4000-8000-000000000000'));
    expect(missing).toBeInstanceOf(SessionboxApiError);
    expect(missing).toMatchObject({ status: 404, code: 'session_not_found' });
    expect(await err(client.execute(sid, 'pass', { timeoutMs: 1 }))).toMatchObject({ status: 400, code: 'invalid_request', message: expect.stringMatching(/^timeoutMs/) });
    const streamErr = await err(all(client.streamExecution(sid, 'pass', { timeoutMs: 1 })));
    expect(streamErr).toMatchObject({ status: 400, code: 'invalid_request' });
    await client.deleteSession(sid);
    expect(await err(client.getSession(sid))).toMatchObject({ status: 410, code: expect.stringMatching(/^session_/) });
    expect(await err(client.execute(sid, 'pass'))).toMatchObject({ status: 410 });
  });
});
