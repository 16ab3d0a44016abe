import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { loadConfig } from '@sessionbox/core';
import { startApi } from '../apps/api/src/server';
import { Http, namespaceContainers, removeNamespace, startSystem, stopExpectingNoLeak, testConfig, type TestSystem } from './helpers/system';

// Every key of this file; names are the owners of what each key makes.
const KEYS = {
  alice: 'alice-key-0123456789abcdef',
  bob: 'bob-key-0123456789abcdef00',
  capped: 'capped-key-0123456789abcdef', // 1 live session
  metered: 'metered-key-0123456789abcde', // 3 executions per minute
};
const ADMIN_KEY = 'admin-key-0123456789abcdef';

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe('API keys: tenants, admin, limits', () => {
  let sys: TestSystem;
  let alice: Http, bob: Http, admin: Http, anon: Http;

  beforeAll(async () => {
    sys = await startSystem({
      SESSIONBOX_API_KEYS: `alice:${KEYS.alice},bob:${KEYS.bob},capped:${KEYS.capped}:1,metered:${KEYS.metered}::3`,
      SESSIONBOX_ADMIN_KEY: ADMIN_KEY,
    });
    alice = new Http(sys.url, bearer(KEYS.alice));
    bob = new Http(sys.url, bearer(KEYS.bob));
    admin = new Http(sys.url, bearer(ADMIN_KEY));
    anon = new Http(sys.url);
  });
  afterAll(() => sys && stopExpectingNoLeak(sys));

  test('no key or a wrong key → 401 unauthorized with WWW-Authenticate; health and the API description stay open', async () => {
    for (const [path, method] of [
      ['/v1/sessions', 'GET'],
      ['/v1/sessions', 'POST'],
      ['/v1/tools/execute_python', 'POST'],
      ['/execute', 'POST'],
      ['/v1/run/', 'POST'],
      ['/mcp', 'POST'],
      ['/no/such/route', 'GET'],
    ] as const) {
      const r = await anon.request(method, path, method === 'POST' ? { code: 'print(1)' } : undefined);
      expect({ path, status: r.status, code: r.body.error?.code }).toEqual({ path, status: 401, code: 'unauthorized' });
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer realm="sessionbox"/);
    }
    const wrong = await anon.get('/v1/sessions', bearer('not-a-key-0123456789abcdef'));
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toContain('invalid_token');
    const basic = await anon.get('/v1/sessions', { authorization: `Basic ${Buffer.from(`alice:${KEYS.alice}`).toString('base64')}` });
    expect(basic.status).toBe(401);
    // a malformed body is not even parsed without a key: no parse error leaks
    const junk = await anon.post('/v1/sessions', '{"not json', { 'content-type': 'application/json' });
    expect(junk.status).toBe(401);

    expect((await anon.get('/healthz')).status).toBe(200);
    expect((await anon.get('/openapi.json')).status).toBe(200);
    // the key also works as X-API-Key (Dify's custom-header auth)
    const viaHeader = await anon.get('/v1/sessions', { 'x-api-key': KEYS.alice });
    expect(viaHeader.status).toBe(200);
    expect(await namespaceContainers(sys.config.namespace)).toHaveLength(0);
  });

  test("each key sees only its own sessions; another key's session is a 404 everywhere, the admin sees all", async () => {
    const a = await alice.createSession({ metadata: { who: 'alice' } });
    const b = await bob.createSession({ metadata: { who: 'bob' } });
    // a figure and a file in alice's session, to try to reach from bob's side
    const run = await alice.run(a.id, "import matplotlib.pyplot as plt\nplt.plot([1,2]); plt.show()\nopen('secret.txt','w').write('alice only')\nprint('ok')");
    expect(run.status).toBe('succeeded');
    const figureId: string = run.figures[0].id;

    const ids = async (h: Http) => ((await h.get('/v1/sessions')).body.sessions as { id: string }[]).map((s) => s.id).sort();
    expect(await ids(alice)).toEqual([a.id]);
    expect(await ids(bob)).toEqual([b.id]);
    expect(await ids(admin)).toEqual([a.id, b.id].sort());
    // the admin listing names each session's key; a tenant's never does
    const owners = Object.fromEntries(((await admin.get('/v1/sessions')).body.sessions as { id: string; owner: string }[]).map((s) => [s.id, s.owner]));
    expect(owners).toEqual({ [a.id]: 'alice', [b.id]: 'bob' });
    expect((await alice.get('/v1/sessions')).body.sessions[0].owner).toBeUndefined();

    const attempts: [string, string, unknown?][] = [
      ['GET', `/v1/sessions/${a.id}`],
      ['POST', `/v1/sessions/${a.id}/executions`, { code: 'print(open("secret.txt").read())' }],
      ['POST', `/v1/sessions/${a.id}/executions?wait=true`, { code: 'print(1)' }],
      ['GET', `/v1/sessions/${a.id}/executions/${run.id}`],
      ['GET', `/v1/sessions/${a.id}/executions/${run.id}/events`],
      ['GET', `/v1/sessions/${a.id}/figures/${figureId}`],
      ['GET', `/v1/sessions/${a.id}/files`],
      ['GET', `/v1/sessions/${a.id}/files/secret.txt`],
      ['PUT', `/v1/sessions/${a.id}/files/planted.txt`, 'x'],
      ['DELETE', `/v1/sessions/${a.id}/files/secret.txt`],
      ['DELETE', `/v1/sessions/${a.id}`],
    ];
    for (const [method, path, body] of attempts) {
      const r = await bob.request(method, path, body, typeof body === 'string' ? { 'content-type': 'application/octet-stream' } : {});
      expect({ method, path, status: r.status }).toEqual({ method, path, status: 404 });
      expect(r.body.error.code).toMatch(/_not_found$/);
    }
    // a figure id of alice's through bob's own session: still not found
    const viaOwn = await bob.get(`/v1/sessions/${b.id}/figures/${figureId}`);
    expect(viaOwn.status).toBe(404);
    // the tool endpoint with alice's session id: the model is told the session does not exist, nothing runs
    const tool = await bob.post('/v1/tools/execute_python', { code: 'print(open("secret.txt").read())', session_id: a.id });
    expect(tool.status).toBe(200);
    expect(tool.body.ok).toBe(false);
    expect(tool.body.error.code).toBe('session_not_found');
    expect(JSON.stringify(tool.body)).not.toContain('alice only');

    // alice's session is untouched, and only her code ran in it
    const after = await alice.run(a.id, "print(open('secret.txt').read()); import os; print(sorted(os.listdir('.')))");
    expect(after.stdout).toContain('alice only');
    expect(after.stdout).not.toContain('planted');
    expect((await alice.get(`/v1/sessions/${a.id}/files/secret.txt`)).raw.toString()).toBe('alice only');
    // the admin reaches any session
    expect((await admin.get(`/v1/sessions/${a.id}`)).status).toBe(200);
    expect((await admin.get(`/v1/sessions/${b.id}/executions/${run.id}`)).status).toBe(404); // wrong session for that execution
    expect((await admin.delete(`/v1/sessions/${b.id}`)).status).toBe(204);
    expect((await bob.get(`/v1/sessions/${b.id}`)).status).toBe(410);
    expect((await alice.delete(`/v1/sessions/${a.id}`)).status).toBe(204);
  });

  test('a key over its live-session cap gets 429 with Retry-After, on every route that makes sessions', async () => {
    const capped = new Http(sys.url, bearer(KEYS.capped));
    const first = await capped.createSession({ ttlSeconds: 120 });
    const before = (await namespaceContainers(sys.config.namespace)).length;

    const second = await capped.post('/v1/sessions', {});
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('rate_limited');
    expect(second.body.error.limit).toBe('sessions');
    const retry = Number(second.headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(120); // the first session's expiry, at most
    for (const [path, body] of [
      ['/v1/tools/execute_python', { code: 'print(1)' }],
      ['/v1/run/', { code: 'print(1)' }],
      ['/execute', { code: 'print(1)' }],
    ] as const) {
      const r = await capped.post(path, body);
      expect({ path, status: r.status }).toEqual({ path, status: 429 });
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    // other keys are not affected, and nothing was half-made
    const other = await alice.createSession();
    expect((await namespaceContainers(sys.config.namespace)).length).toBe(before + 1);
    await alice.delete(`/v1/sessions/${other.id}`);

    // a session that ends frees its slot
    expect((await capped.delete(`/v1/sessions/${first.id}`)).status).toBe(204);
    const again = await capped.createSession();
    expect(again.id).not.toBe(first.id);
    await capped.delete(`/v1/sessions/${again.id}`);
  });

  test('a key over its executions per minute gets 429 with Retry-After; other keys run on', async () => {
    const metered = new Http(sys.url, bearer(KEYS.metered));
    const s = await metered.createSession();
    for (let i = 0; i < 3; i++) {
      const r = await metered.post(`/v1/sessions/${s.id}/executions`, { code: `print(${i})` });
      expect(r.status).toBe(202);
    }
    const over = await metered.post(`/v1/sessions/${s.id}/executions`, { code: 'print("too many")' });
    expect(over.status).toBe(429);
    expect(over.body.error.code).toBe('rate_limited');
    expect(over.body.error.limit).toBe('executions_per_minute');
    const retry = Number(over.headers.get('retry-after'));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    // the tool route counts against the same budget
    const tool = await metered.post('/v1/tools/execute_python', { code: 'print(1)', session_id: s.id });
    expect(tool.status).toBe(429);
    // the refused runs were never recorded: the session's next sequence number is still 4
    const seq = await sys.api.ctx.core.redis.hget(`sb:${sys.config.namespace}:session:${s.id}`, 'seq');
    expect(seq).toBe('3');
    const ok = await alice.createSession();
    expect((await alice.run(ok.id, 'print(2)')).stdout).toBe('2\n');
    await alice.delete(`/v1/sessions/${ok.id}`);
    await metered.delete(`/v1/sessions/${s.id}`);
  });
});

describe('API key configuration', () => {
  const base = { ...process.env, SESSIONBOX_API_KEYS: '', SESSIONBOX_API_KEYS_FILE: '', SESSIONBOX_ADMIN_KEY: '' };

  test('keys parse with per-key limits; bad entries are refused at start', () => {
    const c = loadConfig({ ...base, SESSIONBOX_API_KEYS: `a:${'k'.repeat(16)}, b:${'m'.repeat(20)}:5:100`, SESSIONBOX_KEY_MAX_SESSIONS: '7' });
    expect(c.apiKeys.map((k) => [k.name, k.maxSessions, k.executionsPerMinute])).toEqual([
      ['a', null, null],
      ['b', 5, 100],
    ]);
    expect(c.keyMaxSessions).toBe(7);
    expect(c.keyExecutionsPerMinute).toBe(600);
    expect(loadConfig(base).keyMaxSessions).toBeNull(); // no keys: no limit unless set
    expect(() => loadConfig({ ...base, SESSIONBOX_API_KEYS: 'a:short' })).toThrow(/at least 16/);
    expect(() => loadConfig({ ...base, SESSIONBOX_API_KEYS: `a:${'k'.repeat(16)},a:${'m'.repeat(16)}` })).toThrow(/twice/);
    expect(() => loadConfig({ ...base, SESSIONBOX_API_KEYS: `a:${'k'.repeat(16)}`, SESSIONBOX_ADMIN_KEY: 'k'.repeat(16) })).toThrow(/reuses/);
    expect(() => loadConfig({ ...base, SESSIONBOX_API_KEYS: 'nokey' })).toThrow(/name:key/);
    expect(() => loadConfig({ ...base, SESSIONBOX_API_KEYS_FILE: '/nonexistent/keys.json' })).toThrow(/SESSIONBOX_API_KEYS_FILE/);
  });

  function capture() {
    const lines: { level: number; msg: string; host?: string }[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
        cb();
      },
    });
    return { lines, logger: pino({ level: 'info' }, stream) };
  }

  test('with no key configured the API binds to 127.0.0.1 only and warns at start', async () => {
    const config = testConfig({ SESSIONBOX_API_KEYS: '', SESSIONBOX_ADMIN_KEY: '' });
    delete (config as { host?: string }).host;
    const { lines, logger } = capture();
    const api = await startApi({ ...config, host: undefined }, { logger });
    try {
      expect((api.server.address() as AddressInfo).address).toBe('127.0.0.1');
      const warn = lines.find((l) => l.level === 40 && /NO API KEYS/.test(l.msg));
      expect(warn?.msg).toMatch(/unauthenticated.*127\.0\.0\.1 \(localhost\) only/);
      // open mode: no key needed, everything belongs to "default"
      expect((await new Http(api.url).get('/v1/sessions')).status).toBe(200);
    } finally {
      await api.close();
      await removeNamespace(config.namespace);
    }
  });

  test('with keys configured it binds to every interface and does not warn', async () => {
    const config = testConfig({ SESSIONBOX_API_KEYS: `solo:${'s'.repeat(24)}` });
    const { lines, logger } = capture();
    const api = await startApi({ ...config, host: undefined }, { logger });
    try {
      expect(['0.0.0.0', '::']).toContain((api.server.address() as AddressInfo).address);
      expect(lines.some((l) => /NO API KEYS/.test(l.msg))).toBe(false);
      expect((await new Http(api.url).get('/v1/sessions')).status).toBe(401);
    } finally {
      await api.close();
      await removeNamespace(config.namespace);
    }
  });
});
