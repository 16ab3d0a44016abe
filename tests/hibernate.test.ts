import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import IORedis from 'ioredis';
import { runAdminCli } from './helpers/admin-cli';
import { runscSkipReason } from './helpers/runsc';
import { docker, expectRateLimited, Http, namespaceContainers, REDIS_URL, sleep, TEST_ARCHIVE_DIR, useSystem, waitFor, type TestSystem } from './helpers/system';

// Issue 17 on the real engine: sessions that hibernate at their idle TTL and wake on the next use.
// The operator default here is "hibernate" so that sessions the LLM tool and MCP make hibernate too.
const HIBERNATE = { SESSIONBOX_ON_IDLE: 'hibernate', SESSIONBOX_DEFAULT_TTL_SECONDS: '10', SESSIONBOX_WORKER_METRICS_PORT: '0' };
const sys = useSystem(HIBERNATE);

const SETUP = `
import math, socket
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
df = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})
arr = np.arange(5)
k = 1
def double(v):
    return v * 2 + k
class Point:
    def __init__(self, x):
        self.x = x
p = Point(7)
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
sock = socket.socket()
gen = (i for i in range(3))
print('set up')
`;

const CHECK = `
print(df['a'].sum(), double(20), p.x, int(arr.sum()), math.floor(math.pi), type(p).__name__)
k = 5
print('globals', double(1))
ax.set_title('after wake')
display(fig)
`;

/** The session's containers, found by their sessionbox labels. */
const containersOf = async (s: TestSystem, sid: string) =>
  (await namespaceContainers(s.config.namespace)).filter((c) => c.Labels['sessionbox.session-id'] === sid);
const sessionContainers = (sid: string) => containersOf(sys, sid);

/** Archives (files plus saved state) of a session on disk. */
const archivesOf = (s: TestSystem, sid: string) => {
  const dir = join(TEST_ARCHIVE_DIR, s.config.namespace);
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(sid)) : [];
};

/** Waits for the reaper to hibernate it (reading the session is not use, so polling keeps nothing alive). */
async function waitHibernatedOn(s: TestSystem, sid: string) {
  const r = await waitFor(async () => {
    const got = await s.http.get(`/v1/sessions/${sid}`);
    return got.body.status === 'hibernated' ? got : null;
  }, 60_000, 250);
  return r.body;
}
const waitHibernated = (sid: string) => waitHibernatedOn(sys, sid);

/** The value of one series in Prometheus text format (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}

describe('hibernation (onIdle: "hibernate")', () => {
  test('REST: a DataFrame, a function and a figure survive the idle TTL with the container gone; a socket is named as lost', async () => {
    const s = await sys.http.createSession({ ttlSeconds: 10, onIdle: 'hibernate' });
    expect(s.onIdle).toBe('hibernate');
    const setup = await sys.http.run(s.id, SETUP);
    expect(setup.stdout).toBe('set up\n');
    expect(await sessionContainers(s.id)).toHaveLength(1);

    const hib = await waitHibernated(s.id);
    expect(hib.hibernatedAt).toEqual(expect.any(String));
    expect(Date.parse(hib.wakeUntil) - Date.parse(hib.hibernatedAt)).toBeGreaterThan(6 * 86400 * 1000);
    expect(await sessionContainers(s.id)).toHaveLength(0);
    expect(archivesOf(sys, s.id)).toHaveLength(1);
    // Reading it (and listing) does not wake it.
    expect((await sys.http.get('/v1/sessions?status=hibernated')).body.sessions.map((x: { id: string }) => x.id)).toContain(s.id);
    expect(await sessionContainers(s.id)).toHaveLength(0);

    const woke = await sys.http.run(s.id, CHECK);
    expect(woke.status).toBe('succeeded');
    expect(woke.restored).toBe(true);
    expect(woke.stdout).toBe('6 41 7 10 3 Point\nglobals 7\n');
    expect(woke.figures).toHaveLength(1);
    expect(woke.notes.join('\n')).toMatch(/sock was not restored: .*socket/);
    expect(woke.notes.join('\n')).toMatch(/gen was not restored: a generator/);
    expect(await sessionContainers(s.id)).toHaveLength(1);
    expect(archivesOf(sys, s.id)).toHaveLength(0);
    expect((await sys.http.get(`/v1/sessions/${s.id}`)).body.status).toBe('ready');

    // Only the run that woke it carries restored; the state file is gone from the user's files.
    const next = await sys.http.run(s.id, "import os\nprint(os.path.exists('/work/.sessionbox-state.dill'))");
    expect(next.restored).toBeUndefined();
    expect(next.stdout).toBe('False\n');

    // A second idle period hibernates it again; the second wake sees what the first woken run changed.
    await waitHibernated(s.id);
    expect(await sessionContainers(s.id)).toHaveLength(0);
    const again = await sys.http.run(s.id, 'print(k, double(1), df.shape)');
    expect(again.restored).toBe(true);
    expect(again.stdout).toBe('5 7 (3, 2)\n');
    expect((await sys.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);

    // Hibernation in the worker's metrics, the wake in the api's (it wakes inside the session lookup).
    const worker = await (await fetch(`${sys.worker!.http!.url}/metrics`)).text();
    expect(sample(worker, 'sessionbox_hibernation_total', { event: 'hibernated' })).toBeGreaterThanOrEqual(1);
    expect(sample(worker, 'sessionbox_hibernated_objects_total', { outcome: 'unsaved' })).toBeGreaterThanOrEqual(2);
    const api = (await sys.http.get('/metrics')).raw.toString('utf8');
    expect(sample(api, 'sessionbox_hibernation_total', { event: 'woken' })).toBeGreaterThanOrEqual(1);
    expect(sample(api, 'sessionbox_wake_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(sample(api, 'sessionbox_hibernated_objects_total', { outcome: 'restored' })).toBeGreaterThanOrEqual(6);
    expect(sample(api, 'sessionbox_hibernated_objects_total', { outcome: 'unrestored' })).toBeGreaterThanOrEqual(2);
  });

  test('DELETE and the admin CLI\'s purge end a hibernated session for good, its saved state deleted; onIdle "destroy" still ends at the TTL', async () => {
    const h = await sys.http.createSession({ ttlSeconds: 10 });
    const g = await sys.http.createSession({ ttlSeconds: 10 });
    const f = await sys.http.createSession({ ttlSeconds: 10 });
    await sys.http.run(h.id, 'x = 1');
    await sys.http.run(g.id, "import numpy as np\ny = np.arange(1000)");
    await sys.http.run(f.id, "import os\nos.makedirs('/work/out', exist_ok=True)\nopen('/work/out/a.txt', 'w').write('hello')\nz = 3");
    await waitHibernated(h.id);
    await waitHibernated(g.id);
    await waitHibernated(f.id);

    // A file operation wakes it too; the next run carries restored and sees the state.
    const files = await sys.http.get(`/v1/sessions/${f.id}/files`);
    expect(files.status).toBe(200);
    expect(files.body.files.map((x: { path: string }) => x.path)).toEqual(['out/a.txt']);
    expect(await sessionContainers(f.id)).toHaveLength(1);
    const fz = await sys.http.run(f.id, "print(z, open('/work/out/a.txt').read())");
    expect(fz.restored).toBe(true);
    expect(fz.stdout).toBe('3 hello\n');
    expect((await sys.http.delete(`/v1/sessions/${f.id}`)).status).toBe(204);
    expect(archivesOf(sys, h.id)).toHaveLength(1);
    expect((await sys.http.delete(`/v1/sessions/${h.id}`)).status).toBe(204);
    expect(archivesOf(sys, h.id)).toHaveLength(0);
    expect((await sys.http.post(`/v1/sessions/${h.id}/executions?wait=true`, { code: 'x' })).status).toBe(410);
    expect((await sys.http.get(`/v1/sessions/${h.id}`)).status).toBe(410);
    expect(await sessionContainers(h.id)).toHaveLength(0);

    const cliEnv = { SESSIONBOX_NAMESPACE: sys.config.namespace, SESSIONBOX_REDIS_URL: sys.config.redisUrl, SESSIONBOX_ARCHIVE_DIR: TEST_ARCHIVE_DIR };
    const listed = await runAdminCli(['hibernated', '--json'], cliEnv);
    expect(listed.code).toBe(0);
    const body = JSON.parse(listed.stdout);
    expect(body.sessions.map((r: { id: string }) => r.id)).toEqual([g.id]);
    expect(body.sessions[0].sizeBytes).toBeGreaterThan(1000);
    expect(body.totalBytes).toBe(body.sessions[0].sizeBytes);
    const text = await runAdminCli(['hibernated'], cliEnv);
    expect(text.stdout).toContain(g.id);
    expect(text.stdout).toMatch(/1 hibernated session\(s\), \d+(\.\d+)? \w+ on disk/);

    const purged = await runAdminCli(['hibernated', '--purge', '--json', g.id], cliEnv);
    expect(purged.code).toBe(0);
    expect(JSON.parse(purged.stdout).sessions).toEqual([expect.objectContaining({ id: g.id, purged: true })]);
    expect(archivesOf(sys, g.id)).toHaveLength(0);
    expect((await sys.http.get(`/v1/sessions/${g.id}`)).status).toBe(410);
    expect(JSON.parse((await runAdminCli(['hibernated', '--json'], cliEnv)).stdout).count).toBe(0);

    const d = await sys.http.createSession({ ttlSeconds: 10, onIdle: 'destroy' });
    await sys.http.run(d.id, 'x = 1');
    await waitFor(async () => {
      const r = await sys.http.get('/v1/sessions?status=terminated');
      return r.body.sessions.some((x: { id: string }) => x.id === d.id);
    }, 60_000, 250);
    const gone = await sys.http.get(`/v1/sessions/${d.id}`);
    expect(gone.status).toBe(410);
    expect(gone.body.error.code).toBe('session_expired');
    expect(await sessionContainers(d.id)).toHaveLength(0);
  });

  test('the LLM tool: the same session_id keeps working after hibernation', async () => {
    const first = await sys.http.post('/v1/tools/execute_python', { code: SETUP });
    expect(first.body).toMatchObject({ ok: true, session_created: true });
    const sid = first.body.session_id as string;
    await waitHibernated(sid);
    const again = await sys.http.post('/v1/tools/execute_python', { code: CHECK, session_id: sid });
    expect(again.body).toMatchObject({ ok: true, session_id: sid, session_created: false, execution: { status: 'succeeded', restored: true } });
    expect(again.body.text).toContain('6 41 7 10 3 Point');
    expect(again.body.text).toContain('woken for this call');
    expect(again.body.execution.notes.join('\n')).toContain('sock was not restored');
    expect((await sys.http.delete(`/v1/sessions/${sid}`)).status).toBe(204);
  });

  test('MCP: execute_python wakes a hibernated session', async () => {
    const client = new Client({ name: 'sessionbox-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${sys.url}/mcp`)));
    try {
      const text = async (args: Record<string, unknown>) => {
        const r = await client.callTool({ name: 'execute_python', arguments: args });
        return (r.content as { type: string; text?: string }[]).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
      };
      const created = await client.callTool({ name: 'create_session', arguments: {} });
      const sid = (created.structuredContent as { session_id: string }).session_id;
      expect(await text({ session_id: sid, code: SETUP })).toContain('set up');
      await waitHibernated(sid);
      expect(await sessionContainers(sid)).toHaveLength(0);
      const woke = await text({ session_id: sid, code: CHECK });
      expect(woke).toContain('6 41 7 10 3 Point');
      expect(woke).toContain('note: sock was not restored');
      expect(await sessionContainers(sid)).toHaveLength(1);
      await client.callTool({ name: 'close_session', arguments: { session_id: sid } });
    } finally {
      await client.close();
    }
  });
});

describe('hibernation: the wake window ends it for good', () => {
  const short = useSystem({ ...HIBERNATE, SESSIONBOX_HIBERNATE_RETENTION_SECONDS: '10' });

  test('past wakeUntil the session is expired (410), its saved state deleted', async () => {
    const s = await short.http.createSession({ ttlSeconds: 10 });
    await short.http.run(s.id, 'x = 1');
    const hib = await waitHibernatedOn(short, s.id);
    expect(Date.parse(hib.wakeUntil) - Date.parse(hib.hibernatedAt)).toBeLessThanOrEqual(11_000);
    const gone = await waitFor(async () => {
      const r = await short.http.get(`/v1/sessions/${s.id}`);
      return r.status === 410 ? r : null;
    }, 60_000, 250);
    expect(gone.body.error.code).toBe('session_expired');
    expect(archivesOf(short, s.id)).toHaveLength(0);
    expect((await short.http.post(`/v1/sessions/${s.id}/executions?wait=true`, { code: 'x' })).status).toBe(410);
    expect(await containersOf(short, s.id)).toHaveLength(0);
  });

  test('an end at wakeUntil that fails once is tried again on a later reaper pass', async () => {
    const s = await short.http.createSession({ ttlSeconds: 10 });
    await short.http.run(s.id, 'x = 1');
    await waitHibernatedOn(short, s.id);
    const containerId = await testRedis.hget(`sb:${short.config.namespace}:session:${s.id}`, 'containerId');
    // The worker's engine refuses its first removal (a hiccup); the end at wakeUntil must not stop there.
    const runtime = short.worker!.core.runtimes.get('local')!;
    const remove = jest.spyOn(runtime, 'remove');
    remove.mockRejectedValueOnce(new Error('engine hiccup (injected)'));
    try {
      const gone = await waitFor(async () => {
        const r = await short.http.get(`/v1/sessions/${s.id}`);
        return r.status === 410 ? r : null;
      }, 60_000, 250);
      expect(gone.body.error.code).toBe('session_expired');
      const ofIt = remove.mock.calls.filter(([id]) => id === containerId);
      expect(ofIt.length).toBeGreaterThanOrEqual(2);
    } finally {
      remove.mockRestore();
    }
    expect(archivesOf(short, s.id)).toHaveLength(0);
  });
});

const testRedis = new IORedis(REDIS_URL);
afterAll(() => testRedis.quit());

describe('hibernation: a wake takes a warm-pool container', () => {
  const pooled = useSystem({ ...HIBERNATE, SESSIONBOX_POOL_SIZE: '2' });
  const ns = () => pooled.config.namespace;
  const poolIds = async () => (await testRedis.lrange(`sb:${ns()}:pool:local`, 0, -1)).map((r) => JSON.parse(r).sessionId as string);
  const recordContainer = async (sid: string) => (await testRedis.hget(`sb:${ns()}:session:${sid}`, 'containerId'))!;
  const labelOf = async (containerId: string) => (await docker.getContainer(containerId).inspect()).Config.Labels['sessionbox.session-id'];
  const cli = async (args: string[]) => {
    const r = await runAdminCli([...args, '--json'], { SESSIONBOX_NAMESPACE: ns(), SESSIONBOX_REDIS_URL: pooled.config.redisUrl, SESSIONBOX_ARCHIVE_DIR: TEST_ARCHIVE_DIR });
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout);
  };

  /** A hibernated session whose wake found a full pool: returns the woken session and the pool id its container carries. */
  async function wakeIntoPool(code: string, check: string, expected: string) {
    const s = await pooled.http.createSession({ ttlSeconds: 10 });
    await pooled.http.run(s.id, code);
    await waitHibernatedOn(pooled, s.id);
    const listed = await waitFor(async () => {
      const ids = await poolIds();
      return ids.length === 2 ? ids : null;
    }, 120_000, 200);
    const woke = await pooled.http.run(s.id, check);
    expect(woke).toMatchObject({ status: 'succeeded', restored: true, stdout: expected });
    const containerId = await recordContainer(s.id);
    const label = await labelOf(containerId);
    expect(label).not.toBe(s.id);
    expect(listed).toContain(label);
    // Off the pool list for good (it refills with new ids), and nothing is labelled with the session's own id.
    expect(await poolIds()).not.toContain(label);
    expect(await containersOf(pooled, s.id)).toHaveLength(0);
    return { s, containerId, label };
  }

  test('state and files come back in the pool container; ls and cleanup see it as the session\'s; its death ends the session', async () => {
    const { s, containerId, label } = await wakeIntoPool(
      "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})\nx = 42\nopen('/work/note.txt', 'w').write('kept')",
      "print(x, df['a'].sum(), open('/work/note.txt').read())",
      '42 6 kept\n',
    );
    expect((await pooled.http.run(s.id, 'x += 1\nprint(x)')).stdout).toBe('43\n');
    expect(await testRedis.get(`sb:${ns()}:alias:${label}`)).toBe(s.id);

    // Both at once, within the 10 s idle TTL the last run started.
    const [ls, plan] = await Promise.all([cli(['ls']), cli(['cleanup', '--dry-run', '--grace', '0'])]);
    expect(ls.sessions.find((r: { id: string }) => r.id === s.id)).toMatchObject({ state: 'ready', container: { running: true } });
    // (a pool container being made shows as a young orphan; the woken one must not)
    expect(ls.sessions.filter((r: { container?: { id: string } }) => r.container?.id === containerId).map((r: { id: string; state: string }) => [r.id, r.state])).toEqual([[s.id, 'ready']]);
    expect(plan.actions.filter((a: { containerId?: string }) => a.containerId === containerId)).toEqual([]);

    // Removed from outside (docker rm -f): the reaper hears it by the pool id on the label and ends this session.
    await docker.getContainer(containerId).remove({ force: true });
    const gone = await waitFor(async () => {
      const r = await pooled.http.get(`/v1/sessions/${s.id}`);
      return r.status === 410 ? r : null;
    }, 30_000, 200);
    expect(gone.body.error.message).toMatch(/container_(removed|exited)/);
    expect(await testRedis.exists(`sb:${ns()}:alias:${label}`)).toBe(0);
  });

  test('DELETE of a session woken into a pool container leaves no container and no alias; cleanup then has nothing of it', async () => {
    const { s, containerId, label } = await wakeIntoPool('y = 7', 'print(y)', '7\n');
    expect((await pooled.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    expect(await docker.getContainer(containerId).inspect().catch(() => null)).toBeNull();
    expect((await namespaceContainers(ns())).filter((c) => c.Labels['sessionbox.session-id'] === label)).toHaveLength(0);
    expect(await testRedis.exists(`sb:${ns()}:alias:${label}`)).toBe(0);
    const plan = await cli(['cleanup', '--dry-run', '--grace', '0']);
    expect(plan.actions.filter((a: { sessionId?: string }) => a.sessionId === s.id || a.sessionId === label)).toEqual([]);
  });
});

describe('hibernation: a hibernated session holds no live-session slot of its key', () => {
  const KEY = 'sk-hib-alice-0123456789';
  const keyed = useSystem({ ...HIBERNATE, SESSIONBOX_API_KEYS: `alice:${KEY}:1` });
  const alice = () => new Http(keyed.url, { authorization: `Bearer ${KEY}` });

  test('hibernating frees the slot; waking over the cap is a 429 that changes nothing; with room it wakes', async () => {
    const http = alice();
    const a = await http.createSession({ ttlSeconds: 10 });
    await http.run(a.id, 'x = 5');
    await waitFor(async () => (await http.get(`/v1/sessions/${a.id}`)).body.status === 'hibernated', 60_000, 250);

    // The slot a held is free: a second live session fits under the cap of 1.
    const b = await http.createSession({ ttlSeconds: 600, onIdle: 'destroy' });
    expect(b.status).toBe('ready');

    const refused = await http.post(`/v1/sessions/${a.id}/executions?wait=true`, { code: 'print(x)' });
    expectRateLimited(refused, 'sessions', 1);
    expect((await http.get(`/v1/sessions/${a.id}`)).body.status).toBe('hibernated');
    expect(await containersOf(keyed, a.id)).toHaveLength(0);
    expect(archivesOf(keyed, a.id)).toHaveLength(1);

    expect((await http.delete(`/v1/sessions/${b.id}`)).status).toBe(204);
    const woke = await http.run(a.id, 'print(x)');
    expect(woke).toMatchObject({ status: 'succeeded', restored: true, stdout: '5\n' });
    // Awake it holds the slot again.
    expectRateLimited(await http.post('/v1/sessions', {}), 'sessions', 1);
    expect((await http.delete(`/v1/sessions/${a.id}`)).status).toBe(204);
  });
});

describe('hibernation: a session used while it is being saved stays live', () => {
  const busy = useSystem(HIBERNATE);

  test('an execution submitted while the hibernate op runs cancels it: same container, state kept, no saved copy left', async () => {
    const s = await busy.http.createSession({ ttlSeconds: 10 });
    // Saving `slow` takes seconds (dill calls __getstate__), which holds the hibernate op open.
    const setup = await busy.http.run(s.id, 'import time\nclass Slow:\n    def __getstate__(self):\n        time.sleep(2)\n        return {}\nslow = Slow()\nx = 11\nprint("ok")');
    expect(setup.stdout).toBe('ok\n');
    const [before] = await containersOf(busy, s.id);
    // The reaper's claim takes it off the expiry index just before it sends the hibernate op.
    await waitFor(async () => (await testRedis.zscore(`sb:${busy.config.namespace}:expiry`, s.id)) === null, 60_000, 50);
    const used = await busy.http.run(s.id, "import os\nprint(x, os.path.exists('/work/.sessionbox-state.dill'))");
    expect(used.status).toBe('succeeded');
    expect(used.restored).toBeUndefined();
    // The hibernation ran to its check, saw the use and gave up: its state file is gone once it has.
    await waitFor(async () => (await busy.http.run(s.id, "import os\nprint(os.path.exists('/work/.sessionbox-state.dill'))")).stdout === 'False\n', 30_000, 500);
    expect(used.stdout).toMatch(/^11 (True|False)\n$/);
    const after = await busy.http.get(`/v1/sessions/${s.id}`);
    expect(after.body.status).toBe('ready');
    expect((await containersOf(busy, s.id)).map((c) => c.Id)).toEqual([before.Id]);
    expect(archivesOf(busy, s.id)).toHaveLength(0);
    const worker = await (await fetch(`${busy.worker!.http!.url}/metrics`)).text();
    expect(sample(worker, 'sessionbox_hibernation_total', { event: 'cancelled' })).toBe(1);
    expect(sample(worker, 'sessionbox_hibernation_total', { event: 'hibernated' })).toBe(0);
    expect((await busy.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
  });
});

/** A free TCP port on 127.0.0.1. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

/** A redis-server of this test's own (AOF, in a temp dir), so restarting it disturbs nobody. */
class OwnRedis {
  private proc: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'sessionbox-hib-redis-'));
  constructor(readonly port: number) {}
  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start() {
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--dir', this.dir], { stdio: 'ignore' });
    const probe = new IORedis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    await waitFor(async () => (await probe.connect().then(() => probe.ping(), () => null)) === 'PONG', 10_000, 100);
    probe.disconnect();
  }
  async stop() {
    const p = this.proc;
    if (!p) return;
    this.proc = null;
    await new Promise((r) => {
      p.once('exit', r);
      p.kill('SIGTERM');
    });
  }
}

let ownRedis: OwnRedis | null = null;
// File level, so it runs after the describe's system has stopped.
afterAll(async () => {
  await ownRedis?.stop();
  if (ownRedis) rmSync(ownRedis.dir, { recursive: true, force: true });
});

describe('hibernation: records survive a Redis restart; the saved state has a cap', () => {
  // Filled in before the system starts (useSystem reads it in its own beforeAll, registered after this one).
  const env: Record<string, string> = { ...HIBERNATE, SESSIONBOX_HIBERNATE_MAX_STATE_BYTES: String(1024 * 1024) };
  beforeAll(async () => {
    ownRedis = new OwnRedis(await freePort());
    await ownRedis.start();
    env.SESSIONBOX_REDIS_URL = ownRedis.url;
  });
  const withOwn = useSystem(env);

  test('a hibernated session wakes after its Redis restarted; what is over the state cap is named', async () => {
    const s = await withOwn.http.createSession({ ttlSeconds: 10 });
    const setup = await withOwn.http.run(s.id, "import numpy as np\nsmall = list(range(10))\nbig = np.zeros(400_000)\nwith open('/work/keep.txt', 'w') as f: f.write('kept')\nprint('ok')");
    expect(setup.stdout).toBe('ok\n');
    await waitHibernatedOn(withOwn, s.id);
    expect(await containersOf(withOwn, s.id)).toHaveLength(0);

    await sleep(1500); // past one AOF fsync (everysec)
    await ownRedis!.stop();
    await ownRedis!.start();

    // Until the api's connections are back, a call may fail (503); the first that goes through wakes it.
    const woke = await waitFor(async () => {
      const r = await withOwn.http
        .post(`/v1/sessions/${s.id}/executions?wait=true`, { code: "print(small[-1], np.__name__, open('/work/keep.txt').read())\nprint('big' in globals())" })
        .catch(() => null);
      return r && r.status < 300 ? r : null;
    }, 30_000, 500);
    expect(woke.body.status).toBe('succeeded');
    expect(woke.body.restored).toBe(true);
    expect(woke.body.stdout).toBe('9 numpy kept\nFalse\n');
    expect(woke.body.notes.join('\n')).toMatch(/big was not restored: .*cap of 1048576 bytes/);
    expect(woke.body.notes.join('\n')).toMatch(/f was not restored: a file handle/);
    expect(await containersOf(withOwn, s.id)).toHaveLength(1);
    expect((await withOwn.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
  });
});

const RUNSC_SKIPPED = runscSkipReason('hibernation');

// Under runsc with checkpoints turned off (and on an engine without `experimental`) the dill path is
// used; the checkpoint path has its own file (tests/hibernate-checkpoint.test.ts).
(RUNSC_SKIPPED ? describe.skip : describe)(`hibernation under runsc (dill path)${RUNSC_SKIPPED ? ` [skipped: ${RUNSC_SKIPPED}]` : ''}`, () => {
  const gv = useSystem({ ...HIBERNATE, SESSIONBOX_RUNTIME: 'runsc', SESSIONBOX_HIBERNATE_CHECKPOINT: 'off' });

  test('a DataFrame, a function and a figure survive hibernation under gVisor; the socket is named', async () => {
    const s = await gv.http.createSession({ ttlSeconds: 10 });
    expect((await gv.http.run(s.id, SETUP)).stdout).toBe('set up\n');
    await waitHibernatedOn(gv, s.id);
    expect(await containersOf(gv, s.id)).toHaveLength(0);
    const woke = await gv.http.run(s.id, CHECK);
    expect(woke.restored).toBe(true);
    expect(woke.stdout).toBe('6 41 7 10 3 Point\nglobals 7\n');
    expect(woke.figures).toHaveLength(1);
    expect(woke.notes.join('\n')).toMatch(/sock was not restored/);
    const [c] = await containersOf(gv, s.id);
    expect((await docker.getContainer(c.Id).inspect()).HostConfig.Runtime).toBe('runsc');
    expect((await gv.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
  });
});
