import IORedis from 'ioredis';
import { Http, REDIS_URL, docker, expectRateLimited, namespaceContainers, sleep, startSystem, waitFor, type TestSystem } from './helpers/system';

/**
 * Issue 14, fair share: limits mean what they say, and no session or tenant starves the others.
 * Everything runs on the real engine and Redis; nothing here asserts on elapsed time (see bench/fair-share.ts).
 */

const MiB = 1024 * 1024;
const KEYS = { alice: 'alice-key-0123456789abcdef', bob: 'bob-key-0123456789abcdef0' };
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function withSystem(env: Record<string, string>, fn: (sys: TestSystem) => Promise<void>) {
  const sys = await startSystem(env);
  try {
    await fn(sys);
  } finally {
    await sys.stop();
    expect(await namespaceContainers(sys.config.namespace)).toHaveLength(0);
  }
}

async function submit(http: Http, sessionId: string, code: string, timeoutMs = 60_000) {
  return http.post(`/v1/sessions/${sessionId}/executions`, { code, timeoutMs });
}

async function execution(http: Http, sessionId: string, id: string) {
  return (await http.get(`/v1/sessions/${sessionId}/executions/${id}`)).body as { status: string; [k: string]: any };
}

async function containerExists(sessionId: string): Promise<boolean> {
  const found = await docker.listContainers({ all: true, filters: { label: [`sessionbox.session-id=${sessionId}`] } });
  return found.length > 0;
}

describe('fair share (issue 14)', () => {
  test('1. memoryMb is the interpreter’s limit: a MemoryError past it, state kept, files up to diskMb still writable on top', async () => {
    await withSystem({}, async (sys) => {
      const s = await sys.http.createSession({ limits: { memoryMb: 128, diskMb: 256 } });
      const held = await sys.http.run(s.id, 'a = bytearray(60 << 20)\nlen(a)');
      expect(held).toMatchObject({ status: 'succeeded', result: String(60 * MiB) });
      expect(held.usage.peakMemoryBytes).toBeGreaterThan(60 * MiB);

      const over = await sys.http.run(s.id, 'b = bytearray(200 << 20)');
      expect(over.status).toBe('failed');
      expect(over.error.name).toBe('MemoryError');
      expect(over.cause).toBe('oom');
      expect(over.restarted).toBe(false);
      // truthful: the container never held the 200 MB the code asked for
      expect(over.usage.peakMemoryBytes).toBeLessThan((60 + 128) * MiB + 128 * MiB);

      // the session keeps its state, and its files may fill diskMb (less /tmp's share) on top of a held interpreter
      const files = await sys.http.run(
        s.id,
        "with open('/work/big.bin', 'wb') as f:\n    for _ in range(180):\n        f.write(b'x' * (1 << 20))\nimport os\n(len(a), os.path.getsize('/work/big.bin'))",
      );
      expect(files).toMatchObject({ status: 'succeeded', result: `(${60 * MiB}, ${180 * MiB})`, restarted: false });
      expect((await sys.http.run(s.id, 'c = bytearray(40 << 20)\nlen(a) + len(c)')).result).toBe(String(100 * MiB));
    });
  });

  test('2a. waiting for a turn takes no worker slot: a bystander runs while one session sleeps with queued runs behind it', async () => {
    await withSystem({ SESSIONBOX_WORKER_CONCURRENCY: '4' }, async (sys) => {
      const hog = await sys.http.createSession();
      const bystander = await sys.http.createSession();
      const first = await submit(sys.http, hog.id, 'import time\ntime.sleep(20)');
      expect(first.status).toBe(202);
      await waitFor(async () => (await execution(sys.http, hog.id, first.body.id)).status === 'running', 30_000);
      const queued: string[] = [];
      for (let i = 0; i < 12; i++) {
        const r = await submit(sys.http, hog.id, `x = ${i}`);
        expect(r.status).toBe(202);
        queued.push(r.body.id);
      }
      const answer = await sys.http.run(bystander.id, 'print(1)');
      expect(answer).toMatchObject({ status: 'succeeded', stdout: '1\n' });
      // the bystander was answered while the hog's sleep still held its session
      expect((await execution(sys.http, hog.id, first.body.id)).status).toBe('running');
      expect((await execution(sys.http, hog.id, queued[0])).status).toBe('queued');
      // ending the hog ends what it had queued, in order, without running it
      expect((await sys.http.delete(`/v1/sessions/${hog.id}?keep=outputs`)).status).toBe(204);
      const last = await waitFor(async () => {
        const e = await execution(sys.http, hog.id, queued.at(-1)!);
        return e.status !== 'queued' && e;
      }, 30_000);
      expect(last).toMatchObject({ status: 'failed', cause: 'session_terminated' });
    });
  });

  test('2b. a session’s queued runs still run in submission order once it is its turn', async () => {
    await withSystem({ SESSIONBOX_WORKER_CONCURRENCY: '2' }, async (sys) => {
      const s = await sys.http.createSession();
      await sys.http.run(s.id, 'seen = []');
      const ids: string[] = [];
      ids.push((await submit(sys.http, s.id, 'import time\ntime.sleep(1)\nseen.append(0)')).body.id);
      for (let i = 1; i < 8; i++) ids.push((await submit(sys.http, s.id, `seen.append(${i})`)).body.id);
      await waitFor(async () => (await execution(sys.http, s.id, ids.at(-1)!)).status === 'succeeded', 60_000);
      expect((await sys.http.run(s.id, 'seen')).result).toBe('[0, 1, 2, 3, 4, 5, 6, 7]');
    });
  });

  test('2c. per-key caps on sessions with code in flight and on unfinished executions: 429 with Retry-After', async () => {
    await withSystem(
      {
        SESSIONBOX_API_KEYS: `alice:${KEYS.alice},bob:${KEYS.bob}`,
        SESSIONBOX_KEY_MAX_RUNNING_EXECUTIONS: '2',
        SESSIONBOX_KEY_MAX_QUEUED_EXECUTIONS: '4',
      },
      async (sys) => {
        const alice = new Http(sys.url, bearer(KEYS.alice));
        const bob = new Http(sys.url, bearer(KEYS.bob));
        const [s1, s2, s3] = [await alice.createSession(), await alice.createSession(), await alice.createSession()];
        expect((await submit(alice, s1.id, 'import time\ntime.sleep(30)')).status).toBe(202);
        expect((await submit(alice, s2.id, 'import time\ntime.sleep(30)')).status).toBe(202);
        const third = await submit(alice, s3.id, 'print(1)');
        expectRateLimited(third, 'running_executions', 2);
        // more runs in a session that already has code in flight are only queued ones
        expect((await submit(alice, s1.id, 'x = 1')).status).toBe(202);
        expect((await submit(alice, s1.id, 'x = 2')).status).toBe(202);
        const fifth = await submit(alice, s1.id, 'x = 3');
        expectRateLimited(fifth, 'queued_executions', 4);
        // another key is not held up
        const b = await bob.createSession();
        expect(await bob.run(b.id, 'print(2)')).toMatchObject({ status: 'succeeded', stdout: '2\n' });
        // once alice's runs end, her places come back
        expect((await alice.delete(`/v1/sessions/${s1.id}`)).status).toBe(204);
        expect((await alice.delete(`/v1/sessions/${s2.id}`)).status).toBe(204);
        const later = await waitFor(async () => {
          const r = await alice.post(`/v1/sessions/${s3.id}/executions?wait=true`, { code: 'print(3)' });
          return r.status === 200 && r;
        }, 30_000, 250);
        expect(later.body).toMatchObject({ status: 'succeeded', stdout: '3\n' });
      },
    );
  });

  test('3. ceilings per session (400 naming the limit), budgets per key (429) and a host that takes no more than it holds (503)', async () => {
    await withSystem(
      {
        SESSIONBOX_API_KEYS: `alice:${KEYS.alice},bob:${KEYS.bob}`,
        SESSIONBOX_MAX_MEMORY_MB: '1024',
        SESSIONBOX_MAX_DISK_MB: '1024',
        SESSIONBOX_MAX_CPUS: '1',
        SESSIONBOX_MAX_PIDS: '256',
        SESSIONBOX_KEY_MAX_MEMORY_MB: '2048',
        SESSIONBOX_KEY_MAX_CPUS: '1.5',
        SESSIONBOX_HOST_MEMORY_MB: '3000',
        SESSIONBOX_HOST_MEMORY_OVERCOMMIT: '1',
      },
      async (sys) => {
        const alice = new Http(sys.url, bearer(KEYS.alice));
        const bob = new Http(sys.url, bearer(KEYS.bob));
        for (const [limits, name] of [
          [{ memoryMb: 2048 }, 'memoryMb'],
          [{ diskMb: 2048 }, 'diskMb'],
          [{ cpus: 2 }, 'cpus'],
          [{ pids: 512 }, 'pids'],
        ] as const) {
          const r = await alice.post('/v1/sessions', { limits });
          expect(r.status).toBe(400);
          expect(r.body.error).toMatchObject({ code: 'invalid_request', limit: name });
          expect(r.body.error.message).toContain(`limits.${name}`);
        }
        // key budgets: memoryMb + diskMb and cpus over the key's live sessions
        const big = await alice.createSession({ limits: { memoryMb: 1024, diskMb: 512, cpus: 1 } });
        const mem = await alice.post('/v1/sessions', { limits: { memoryMb: 512, diskMb: 128, cpus: 0.25 } });
        expectRateLimited(mem, 'memory_mb', 2048);
        const cpu = await alice.post('/v1/sessions', { limits: { memoryMb: 256, diskMb: 64, cpus: 1 } });
        expectRateLimited(cpu, 'cpus', 1.5);
        // the host (3000 MiB, no overcommit) already holds alice's 1536 + 128 MiB
        const full = await bob.post('/v1/sessions', { limits: { memoryMb: 1024, diskMb: 512 } });
        expect(full.status).toBe(503);
        expect(full.body.error.code).toBe('capacity_exhausted');
        expect(full.body.error.message).toMatch(/host_memory/);
        const fits = await bob.createSession({ limits: { memoryMb: 512, diskMb: 256 } });
        expect((await alice.delete(`/v1/sessions/${big.id}`)).status).toBe(204);
        // what an ended session held is given back, to its key and to its host
        const again = await alice.createSession({ limits: { memoryMb: 1024, diskMb: 512, cpus: 1 } });
        expect((await alice.delete(`/v1/sessions/${again.id}`)).status).toBe(204);
        expect((await bob.delete(`/v1/sessions/${fits.id}`)).status).toBe(204);
      },
    );
  });

  test('4. one session whose archive stalls (a hung container) does not hold up expiry for another', async () => {
    await withSystem({ SESSIONBOX_REAPER_INTERVAL_MS: '200' }, async (sys) => {
      const staller = await sys.http.createSession({ ttlSeconds: 10 });
      // A hung container: its supervisor stopped from the host, so the expiry archive (relayed to
      // it) cannot finish before its timeout. (User code itself can no longer stall it: file
      // operations run as another uid, and nothing of user code runs between runs.)
      await sys.http.run(staller.id, "open('/work/keep.txt', 'w').write('x')");
      const [info] = await docker.listContainers({ filters: { label: [`sessionbox.session-id=${staller.id}`] } });
      process.kill((await docker.getContainer(info.Id).inspect()).State.Pid, 'SIGSTOP');
      const victim = await sys.http.createSession({ ttlSeconds: 12 });
      const expiresAt = Date.parse(victim.expiresAt);
      await waitFor(async () => !(await containerExists(victim.id)), 60_000, 100);
      // the victim went while the staller's archive still hung (it has a 30 s timeout)
      expect(await containerExists(staller.id)).toBe(true);
      expect((await sys.http.get(`/v1/sessions/${victim.id}`)).status).toBe(410);
      expect(Date.now()).toBeGreaterThan(expiresAt);
      // the staller goes too, once its archive gives up
      await waitFor(async () => !(await containerExists(staller.id)), 60_000, 250);
    });
  });

  test('5. only use counts as activity: reads, listings, SSE and figure downloads do not move lastActiveAt', async () => {
    await withSystem({}, async (sys) => {
      const s = await sys.http.createSession({ ttlSeconds: 300 });
      const ran = await sys.http.run(s.id, "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nopen('/work/a.txt', 'w').write('a')");
      expect(ran.figures).toHaveLength(1);
      const active = (await sys.http.get(`/v1/sessions/${s.id}`)).body.lastActiveAt;
      await sleep(50);
      expect((await sys.http.get(`/v1/sessions/${s.id}`)).status).toBe(200);
      expect((await sys.http.get('/v1/sessions')).status).toBe(200);
      expect((await sys.http.get(`/v1/sessions/${s.id}/files`)).status).toBe(200);
      expect((await sys.http.get(`/v1/sessions/${s.id}/files/a.txt`)).status).toBe(200);
      expect((await sys.http.get(`/v1/sessions/${s.id}/executions/${ran.id}`)).status).toBe(200);
      expect((await sys.http.get(`/v1/sessions/${s.id}/executions/${ran.id}`, { accept: 'text/event-stream' })).status).toBe(200);
      expect((await sys.http.get(`/v1/sessions/${s.id}/figures/${ran.figures[0].id}`)).status).toBe(200);
      const after = (await sys.http.get(`/v1/sessions/${s.id}`)).body;
      expect(after.lastActiveAt).toBe(active);

      // what a user does with the session does count
      await sleep(20);
      expect((await sys.http.put(`/v1/sessions/${s.id}/files/b.txt`, 'b', { 'content-type': 'application/octet-stream' })).status).toBe(201);
      const afterUpload = (await sys.http.get(`/v1/sessions/${s.id}`)).body.lastActiveAt;
      expect(Date.parse(afterUpload)).toBeGreaterThan(Date.parse(active));
      await sleep(20);
      await sys.http.run(s.id, 'print(1)');
      expect(Date.parse((await sys.http.get(`/v1/sessions/${s.id}`)).body.lastActiveAt)).toBeGreaterThan(Date.parse(afterUpload));
    });
  });

  test('6. listing is indexed per key and paginated; throwaway sessions leave no record', async () => {
    await withSystem({ SESSIONBOX_API_KEYS: `alice:${KEYS.alice},bob:${KEYS.bob}` }, async (sys) => {
      const alice = new Http(sys.url, bearer(KEYS.alice));
      const bob = new Http(sys.url, bearer(KEYS.bob));
      const mine = [await alice.createSession(), await alice.createSession(), await alice.createSession()].map((s) => s.id);
      const theirs = await bob.createSession();

      const page1 = await alice.get('/v1/sessions?limit=2');
      expect(page1.status).toBe(200);
      expect(page1.body.sessions.map((s: { id: string }) => s.id)).toEqual([mine[2], mine[1]]);
      expect(typeof page1.body.nextCursor).toBe('string');
      const page2 = await alice.get(`/v1/sessions?limit=2&cursor=${encodeURIComponent(page1.body.nextCursor)}`);
      expect(page2.body.sessions.map((s: { id: string }) => s.id)).toEqual([mine[0]]);
      expect(page2.body.nextCursor).toBeNull();
      // without limit: every session of the key, as before (plus nextCursor: null)
      const all = await alice.get('/v1/sessions');
      expect(all.body).toMatchObject({ nextCursor: null });
      expect(all.body.sessions.map((s: { id: string }) => s.id)).toEqual([mine[2], mine[1], mine[0]]);
      expect((await bob.get('/v1/sessions')).body.sessions.map((s: { id: string }) => s.id)).toEqual([theirs.id]);
      const bad = await alice.get('/v1/sessions?cursor=nonsense');
      expect(bad.status).toBe(400);
      expect((await alice.get('/v1/sessions?limit=0')).status).toBe(400);

      // drop-ins run in throwaway sessions that leave nothing behind
      const redis = new IORedis(REDIS_URL);
      try {
        const k = `sb:${sys.config.namespace}:`;
        const before = await redis.zcard(`${k}sessions`);
        expect((await alice.post('/v1/run/', { code: 'print(7)' })).body).toEqual({ output: '7\n' });
        expect((await alice.post('/execute', { code: 'print(8)' })).status).toBe(200);
        expect(await redis.zcard(`${k}sessions`)).toBe(before);
        expect(await redis.zcard(`${k}owner:alice:index`)).toBe(3);
        const ended = await alice.get('/v1/sessions?status=terminated');
        expect(ended.body.sessions).toEqual([]);
      } finally {
        await redis.quit();
      }
    });
  });
});
