import { v4 as uuidv4 } from 'uuid';
import IORedis from 'ioredis';
import { loadConfig, sessionLabels } from '@sessionbox/core';
import { startWorker } from '../apps/worker/src/worker';
import { runAdminCli, type CliResult } from './helpers/admin-cli';
import { REDIS_URL, describeContainers, docker, namespaceContainers, removeNamespace, sleep, startSystem, testNamespace, type TestSystem } from './helpers/system';

/**
 * The admin CLI, run for real (`node bin/sessionbox-admin.cjs …` as a child process) against a real
 * api + worker, real Docker and real Redis, on a namespace of its own for each test (each test makes
 * the state it needs, so any one of them runs alone).
 */
const IMAGE = process.env.SESSIONBOX_IMAGE ?? 'sessionbox/python-runner:latest';

let sys: TestSystem;
let ns: string;
let redis: IORedis;
const foreign: string[] = [];
const otherNs = testNamespace('other');
/** Containers of the namespace a test leaves on purpose (what a crash leaves): the leak check passes over them. */
let deliberate: string[] = [];

function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runAdminCli(args, { SESSIONBOX_NAMESPACE: ns, SESSIONBOX_REDIS_URL: REDIS_URL, ...env });
}

async function json(args: string[], env: Record<string, string> = {}) {
  const r = await cli([...args, '--json'], env);
  try {
    return { ...r, body: JSON.parse(r.stdout) };
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

async function containerOf(sessionId: string) {
  const [c] = await docker.listContainers({ all: true, filters: { label: [`sessionbox.session-id=${sessionId}`, `sessionbox.namespace=${ns}`] } });
  return c ?? null;
}

async function exists(id: string) {
  return docker
    .getContainer(id)
    .inspect()
    .then(() => true)
    .catch(() => false);
}

/** The namespace's keys, less BullMQ's stalled-check lock, which lapses on its own. */
async function namespaceKeys() {
  return (await redis.keys(`sb:${ns}:*`)).filter((k) => !k.endsWith(':stalled-check')).sort();
}

/** The test's stand-in for FLUSHALL: every key of its own namespace, nothing else. */
async function flushNamespace() {
  const keys = await redis.keys(`sb:${ns}:*`);
  if (keys.length) await redis.del(...keys);
}

/** A container that looks like ours by name but is not (no labels), or belongs to another namespace. */
async function makeForeign(name: string, labels: Record<string, string> = {}) {
  const c = await docker.createContainer({ name, Image: IMAGE, Entrypoint: ['sleep', '600'], Labels: labels, HostConfig: { NetworkMode: 'none' } });
  await c.start();
  foreign.push(c.id);
  return c.id;
}

/** A labelled container of this namespace with no record at all: what a crash between create and record leaves. */
async function makeLabelledOrphan(opts: { pool?: boolean } = {}) {
  const sessionId = uuidv4();
  const now = Date.now();
  const c = await docker.createContainer({
    name: `sessionbox-${ns}-${sessionId}`,
    Image: IMAGE,
    Entrypoint: ['sleep', '600'],
    Labels: sessionLabels({ namespace: ns, sessionId, host: 'local', now, expiresAt: now + 600_000, pool: opts.pool }),
    HostConfig: { NetworkMode: 'none' },
  });
  await c.start();
  return { sessionId, containerId: c.id };
}

/** Session A: metadata, a smaller memory limit and one execution. */
async function sessionA() {
  const a = await sys.http.createSession({ metadata: { team: 'red', job: 'a' }, limits: { memoryMb: 256 } });
  const run = await sys.http.run(a.id, 'x = 6 * 7\nprint("hello from a")\nx');
  return { a, execId: run.id as string };
}

/** Session D: a figure in its data. */
async function sessionD() {
  const d = await sys.http.createSession({ metadata: { team: 'blue' } });
  await sys.http.run(d.id, 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()');
  return d;
}

async function deleteSession(id: string) {
  expect((await sys.http.delete(`/v1/sessions/${id}`)).status).toBe(204);
}

beforeAll(() => {
  redis = new IORedis(REDIS_URL);
});
beforeEach(async () => {
  sys = await startSystem();
  ns = sys.config.namespace;
  deliberate = [];
});
afterEach(async () => {
  const left = (await sys.stop()).filter((c) => !deliberate.includes(c.Id));
  expect({ leftBehind: describeContainers(left) }).toEqual({ leftBehind: [] });
});
afterAll(async () => {
  for (const id of foreign) await docker.getContainer(id).remove({ force: true });
  await removeNamespace(otherNs);
  await redis.quit();
});

describe('usage', () => {
  test('--help of the program and of every command exits 0 and states the namespace scope', async () => {
    for (const args of [['--help'], ['ls', '--help'], ['inspect', '--help'], ['kill', '--help'], ['cleanup', '--help'], ['help', 'cleanup']]) {
      const r = await cli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 0 });
      expect(r.stdout).toContain('Usage: sessionbox-admin');
      expect(r.stdout).toContain('sessionbox.namespace=<ns>');
    }
  });

  test('usage errors exit 2: unknown option, missing argument, bad id, unknown kind, --all without --yes', async () => {
    const cases: [string[], RegExp][] = [
      [['ls', '--bogus'], /unknown option '--bogus'/],
      [['inspect'], /missing required argument 'id'/],
      [['kill', 'not-a-uuid'], /not a session id/],
      [['cleanup', '--kind', 'everything'], /"everything" is not one of/],
      [['cleanup', '--older-than', 'soon'], /duration/],
      [['cleanup', '--all'], /add --yes/],
      [['frobnicate'], /unknown command/],
      [[], /Usage: sessionbox-admin/],
    ];
    for (const [args, re] of cases) {
      const r = await cli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(re);
    }
  });
});

describe('with a running system', () => {
  test('ls --json lists the sessions with their fields; --meta and --status filter', async () => {
    const { a } = await sessionA();
    const d = await sessionD();

    const { code, body } = await json(['ls']);
    expect(code).toBe(0);
    expect(body.namespace).toBe(ns);
    expect(body.recordsError).toBeNull();
    const row = body.sessions.find((s: any) => s.id === a.id);
    expect(row).toMatchObject({
      id: a.id,
      state: 'ready',
      status: 'ready',
      host: 'local',
      limits: { memoryMb: 256, cpus: 1, pids: 128, diskMb: 512 },
      metadata: { team: 'red', job: 'a' },
      container: { running: true, state: 'running' },
    });
    expect(row.ageSeconds).toBeGreaterThanOrEqual(0);
    expect(row.idleSeconds).toBeGreaterThanOrEqual(0);
    expect(row.expiresInSeconds).toBeGreaterThan(500);
    expect(row.memoryBytes).toBeGreaterThan(1024 * 1024);
    expect(body.sessions.map((s: any) => s.id)).toEqual(expect.arrayContaining([a.id, d.id]));

    const red = await json(['ls', '--meta', 'team=red']);
    expect(red.body.sessions.map((s: any) => s.id)).toEqual([a.id]);
    const orphans = await json(['ls', '--status', 'orphan,dead']);
    expect(orphans.body.sessions).toEqual([]);

    const table = await cli(['ls']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^SESSION\s+STATE\s+HOST\s+CONTAINER\s+AGE\s+IDLE\s+EXPIRES IN\s+MEMORY\s+LIMITS\s+METADATA/);
    expect(table.stdout).toMatch(new RegExp(`${a.id}\\s+ready\\s+local\\s+[0-9a-f]{12} running .*MiB / 256 MiB\\s+256M mem.*team=red,job=a`));
    await deleteSession(a.id);
    await deleteSession(d.id);
  });

  test('inspect shows the record, the container and recent executions', async () => {
    const { a, execId } = await sessionA();
    const text = await cli(['inspect', a.id]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`Session ${a.id}`);
    expect(text.stdout).toMatch(/status:\s+ready/);
    expect(text.stdout).toContain('Recent executions (1, newest first)');
    expect(text.stdout).toContain(execId);
    expect(text.stdout).toContain('x = 6 * 7');

    const { code, body } = await json(['inspect', a.id]);
    expect(code).toBe(0);
    expect(body.record).toMatchObject({ id: a.id, status: 'ready', metadata: { team: 'red', job: 'a' } });
    expect(body.containers).toHaveLength(1);
    expect(body.containers[0]).toMatchObject({ running: true, labels: { 'sessionbox.session-id': a.id } });
    expect(body.executions[0]).toMatchObject({ id: execId, status: 'succeeded', code: 'x = 6 * 7\nprint("hello from a")\nx' });

    const missing = await cli(['inspect', uuidv4()]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain('nothing in namespace');
    await deleteSession(a.id);
  });

  test('kill destroys a session now, and killing it again (or an unknown id) is fine', async () => {
    const b = await sys.http.createSession();
    const c = await containerOf(b.id);
    expect(c).not.toBeNull();
    const first = await cli(['kill', b.id]);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`${b.id}: terminated`);
    expect(await exists(c!.Id)).toBe(false);
    expect((await sys.http.get(`/v1/sessions/${b.id}`)).status).toBe(410);

    const again = await cli(['kill', b.id, uuidv4()]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`${b.id}: already terminated`);
    expect(again.stdout).toContain('not found (nothing to do)');
  });

  describe('after crashes (worker stopped, so no reaper heals anything)', () => {
    /** Live session A and every kind of leftover a crash leaves, plus two foreign containers. */
    async function crashScene() {
      const { a } = await sessionA();
      const d = await sessionD();
      await sys.worker!.close();
      // 1) the record of D is deleted (an API that died before/after recording it): its container
      //    is an orphan, its executions, event logs, figures and index entries are leftovers
      const dContainer = (await containerOf(d.id))!.Id;
      await redis.del(`sb:${ns}:session:${d.id}`);
      // ...and one with an execution still queued (no worker runs it): its job is a leftover too
      const q = await sys.http.createSession();
      const qContainer = (await containerOf(q.id))!.Id;
      const queued = await sys.http.post(`/v1/sessions/${q.id}/executions`, { code: 'print(1)' });
      expect(queued.status).toBe(202);
      expect(await redis.exists(`sb:${ns}:bull:exec-local:${queued.body.id}`)).toBe(1);
      await redis.del(`sb:${ns}:session:${q.id}`);
      // 2) a container killed from outside, 3) one removed from outside: their records are dead
      const k = await sys.http.createSession();
      const kc = (await containerOf(k.id))!.Id;
      await docker.getContainer(kc).kill();
      const r = await sys.http.createSession();
      const rc = (await containerOf(r.id))!.Id;
      await docker.getContainer(rc).remove({ force: true });
      // 4) the reaper was down for an hour
      const e = await sys.http.createSession();
      const ec = (await containerOf(e.id))!.Id;
      const hourAgo = Date.now() - 3_600_000;
      await redis.hset(`sb:${ns}:session:${e.id}`, 'lastActiveAt', hourAgo - 600_000, 'expiresAt', hourAgo);
      await redis.zadd(`sb:${ns}:expiry`, hourAgo, e.id);
      const crashed = { orphanOfD: dContainer, orphanOfQ: qContainer, queuedJob: queued.body.id, killed: { id: k.id, cid: kc }, removed: { id: r.id, cid: rc }, expired: { id: e.id, cid: ec } };
      // foreign: a similar name without labels, and a sessionbox container of another namespace
      const foreignSimilar = await makeForeign(`sessionbox-${ns}-${uuidv4()}-foreign`);
      const foreignOtherNs = await makeForeign(`sessionbox-${otherNs}-${uuidv4()}`, sessionLabels({ namespace: otherNs, sessionId: uuidv4(), host: 'local', now: 0, expiresAt: 0 }));
      return { a, d, q, k, r, e, crashed, foreignSimilar, foreignOtherNs };
    }

    test('dry-run lists every kind of leftover, skips foreign containers, and changes nothing', async () => {
      const { a, d, q, k, r, e, crashed, foreignSimilar, foreignOtherNs } = await crashScene();
      const { orphanOfD: dContainer, orphanOfQ: qContainer } = crashed;
      const keysBefore = await namespaceKeys();
      const containersBefore = (await namespaceContainers(ns)).map((c) => `${c.Id}:${c.State}`).sort();
      const { code, body } = await json(['cleanup', '--dry-run', '--grace', '0']);
      expect(code).toBe(0);
      expect(body.dryRun).toBe(true);
      const by = (kind: string) => body.actions.filter((x: any) => x.kind === kind);
      expect(by('orphan_container').map((x: any) => x.containerId).sort()).toEqual([dContainer, qContainer].sort());
      expect(by('dead_record').map((x: any) => [x.sessionId, x.reason]).sort()).toEqual(
        [
          [k.id, 'container exited'],
          [r.id, 'container missing'],
        ].sort(),
      );
      expect(by('expired').map((x: any) => x.sessionId)).toEqual([e.id]);
      const leftover = by('leftover_data').find((x: any) => x.sessionId === d.id);
      expect(leftover).toBeDefined();
      expect(leftover.keys).toBeGreaterThanOrEqual(5); // exec record, events, figure, figs set, execs list, seqs
      expect(leftover.indexEntries).toBeGreaterThanOrEqual(3); // sessions, expiry, host set
      expect(by('leftover_data').find((x: any) => x.sessionId === q.id)).toMatchObject({ jobs: 1 });
      expect(body.summary).toMatchObject({ orphan_container: { found: 2 }, dead_record: { found: 2 }, expired: { found: 1 } });
      const touched = body.actions.map((x: any) => x.containerId);
      expect(touched).not.toContain(foreignSimilar);
      expect(touched).not.toContain(foreignOtherNs);
      expect(body.actions.map((x: any) => x.sessionId)).not.toContain(a.id);

      expect(await namespaceKeys()).toEqual(keysBefore);
      expect((await namespaceContainers(ns)).map((c) => `${c.Id}:${c.State}`).sort()).toEqual(containersBefore);

      const text = await cli(['cleanup', '--dry-run', '--grace', '0']);
      expect(text.stdout).toContain('Would do:');
      expect(text.stdout).toContain('dry run: nothing was changed');
      // what the crash left is still there, as it should after a dry run
      deliberate.push(dContainer, qContainer, crashed.killed.cid, crashed.expired.cid);
      await deleteSession(a.id);
    });

    test('a labelled container younger than the grace is left alone (a session being born)', async () => {
      await sys.worker!.close();
      const young = await makeLabelledOrphan();
      const withGrace = await json(['cleanup', '--dry-run', '--kind', 'orphan_container', '--grace', '30s']);
      expect(withGrace.body.actions.map((x: any) => x.containerId)).not.toContain(young.containerId);
      const noGrace = await json(['cleanup', '--dry-run', '--kind', 'orphan_container', '--grace', '0']);
      expect(noGrace.body.actions.map((x: any) => x.containerId)).toContain(young.containerId);
      const older = await json(['cleanup', '--dry-run', '--kind', 'orphan_container', '--grace', '0', '--older-than', '1h']);
      expect(older.body.actions).toEqual([]);
      deliberate.push(young.containerId);
    });

    test('a warm container listed in the pool list is not an orphan; once unlisted it is', async () => {
      await sys.worker!.close();
      const warm = await makeLabelledOrphan({ pool: true });
      const entry = JSON.stringify({ sessionId: warm.sessionId, containerId: warm.containerId, createdAt: Date.now() });
      await redis.rpush(`sb:${ns}:pool:local`, entry);
      const listed = await json(['cleanup', '--dry-run', '--kind', 'orphan_container', '--grace', '0']);
      expect(listed.body.actions.map((x: any) => x.containerId)).not.toContain(warm.containerId);
      const ls = await json(['ls', '--status', 'pool']);
      expect(ls.body.sessions.map((s: any) => s.id)).toEqual([warm.sessionId]);
      await redis.lrem(`sb:${ns}:pool:local`, 0, entry);
      const unlisted = await json(['cleanup', '--dry-run', '--kind', 'orphan_container', '--grace', '0']);
      const action = unlisted.body.actions.find((x: any) => x.containerId === warm.containerId);
      expect(action?.reason).toBe('no session record, not in the pool list');
      deliberate.push(warm.containerId);
    });

    test('cleanup removes them all in one pass and prints a summary; foreign containers survive', async () => {
      const { a, d, crashed, foreignSimilar, foreignOtherNs } = await crashScene();
      await makeLabelledOrphan();
      await makeLabelledOrphan({ pool: true }); // labelled as warm, but not in the pool list
      const { code, body } = await json(['cleanup', '--grace', '0']);
      expect(code).toBe(0);
      // D's and Q's containers, the young one and the unlisted warm one
      expect(body.summary.orphan_container).toEqual({ found: 4, removed: 4, failed: 0, skipped: 0 });
      expect(body.summary.dead_record).toEqual({ found: 2, removed: 2, failed: 0, skipped: 0 });
      expect(body.summary.expired).toEqual({ found: 1, removed: 1, failed: 0, skipped: 0 });
      expect(body.summary.leftover_data.failed).toBe(0);
      expect(body.summary.leftover_data.removed).toBeGreaterThanOrEqual(1);

      expect(await exists(crashed.orphanOfD)).toBe(false);
      expect(await exists(crashed.orphanOfQ)).toBe(false);
      expect(await redis.exists(`sb:${ns}:bull:exec-local:${crashed.queuedJob}`)).toBe(0);
      expect(await redis.exists(`sb:${ns}:exec:${crashed.queuedJob}`)).toBe(0);
      expect(await exists(crashed.killed.cid)).toBe(false);
      expect(await exists(crashed.expired.cid)).toBe(false);
      expect(await exists(foreignSimilar)).toBe(true);
      expect(await exists(foreignOtherNs)).toBe(true);
      expect((await containerOf(a.id))?.State).toBe('running');
      const keys = await namespaceKeys();
      expect(keys.filter((key) => key.includes(d.id))).toEqual([]);
      expect(await redis.zscore(`sb:${ns}:sessions`, d.id)).toBeNull();
      expect(await redis.sismember(`sb:${ns}:host:local:sessions`, d.id)).toBe(0);

      const all = await json(['ls', '--all']);
      const state = (id: string) => all.body.sessions.find((s: any) => s.id === id);
      expect(state(crashed.killed.id)).toMatchObject({ state: 'terminated', terminationReason: 'container_exited' });
      expect(state(crashed.removed.id)).toMatchObject({ state: 'terminated', terminationReason: 'container_removed' });
      expect(state(crashed.expired.id)).toMatchObject({ state: 'terminated', terminationReason: 'expired' });
      expect(state(a.id)).toMatchObject({ state: 'ready' });

      const again = await cli(['cleanup', '--grace', '0']);
      expect(again.code).toBe(0);
      expect(again.stdout).toMatch(/namespace \S+: 0 found, 0 removed, 0 failed/);
      await deleteSession(a.id);
    });

    test('after Redis is flushed (every key of the namespace), every container is an orphan and is removed', async () => {
      const foreignSimilar = await makeForeign(`sessionbox-${ns}-${uuidv4()}-foreign`);
      const foreignOtherNs = await makeForeign(`sessionbox-${otherNs}-${uuidv4()}`, sessionLabels({ namespace: otherNs, sessionId: uuidv4(), host: 'local', now: 0, expiresAt: 0 }));
      await sys.worker!.close();
      const a = await sys.http.createSession();
      const f = await sys.http.createSession();
      const fc = (await containerOf(f.id))!.Id;
      const ac = (await containerOf(a.id))!.Id;
      await flushNamespace();
      const ls = await json(['ls', '--status', 'orphan']);
      expect(ls.body.sessions.map((s: any) => s.id).sort()).toEqual([a.id, f.id].sort());
      const { code, body } = await json(['cleanup', '--grace', '0']);
      expect(code).toBe(0);
      expect(body.summary.orphan_container).toEqual({ found: 2, removed: 2, failed: 0, skipped: 0 });
      expect(await exists(fc)).toBe(false);
      expect(await exists(ac)).toBe(false);
      expect(await exists(foreignSimilar)).toBe(true);
      expect(await exists(foreignOtherNs)).toBe(true);
    });
  });

  describe('with Redis down', () => {
    const down = { SESSIONBOX_REDIS_URL: 'redis://127.0.0.1:1' };

    test('ls still lists containers by label and says records could not be read', async () => {
      const g = await sys.http.createSession({ metadata: { who: 'g' } });
      const text = await cli(['ls'], down);
      expect(text.code).toBe(1);
      expect(text.stderr).toMatch(/records could not be read \(Redis: .*ECONNREFUSED/);
      expect(text.stdout).toMatch(new RegExp(`${g.id}\\s+unknown\\s+local\\s+[0-9a-f]{12} running`));
      const { body } = await json(['ls'], down);
      expect(body.recordsError).toMatch(/ECONNREFUSED/);
      expect(body.sessions.map((s: any) => s.id)).toContain(g.id);
      const dry = await cli(['cleanup', '--dry-run', '--grace', '0'], down);
      expect(dry.code).toBe(1);
      expect(dry.stderr).toContain('records could not be read');
      expect(await containerOf(g.id)).not.toBeNull();
      await deleteSession(g.id);
    });

    test('cleanup --all --yes removes the namespace containers by label and nothing else', async () => {
      const foreignSimilar = await makeForeign(`sessionbox-${ns}-${uuidv4()}-foreign`);
      const foreignOtherNs = await makeForeign(`sessionbox-${otherNs}-${uuidv4()}`, sessionLabels({ namespace: otherNs, sessionId: uuidv4(), host: 'local', now: 0, expiresAt: 0 }));
      await Promise.all([sys.http.createSession(), sys.http.createSession()]);
      const before = await namespaceContainers(ns);
      expect(before.length).toBeGreaterThan(0);
      const r = await cli(['cleanup', '--all', '--yes', '--grace', '0'], down);
      expect(r.stderr).toContain('records could not be read (Redis:');
      expect(r.stdout).toMatch(new RegExp(`all\\s+${before.length}\\s+${before.length}\\s+0\\s+0`));
      expect(r.code).toBe(1); // the containers are gone, but the records could not be ended
      expect(await namespaceContainers(ns)).toHaveLength(0);
      expect(await exists(foreignSimilar)).toBe(true);
      expect(await exists(foreignOtherNs)).toBe(true);
    });
  });

  test('a worker starting with reconcile on removes an orphan left by a crash', async () => {
    const foreignSimilar = await makeForeign(`sessionbox-${ns}-${uuidv4()}-foreign`);
    const h = await sys.http.createSession();
    const hc = (await containerOf(h.id))!.Id;
    await redis.del(`sb:${ns}:session:${h.id}`);
    await sleep(600); // past the grace below
    const config = loadConfig({
      ...process.env,
      SESSIONBOX_NAMESPACE: ns,
      SESSIONBOX_REDIS_URL: REDIS_URL,
      SESSIONBOX_LOG_LEVEL: 'silent',
      SESSIONBOX_RECONCILE_ON_START: 'true',
      SESSIONBOX_RECONCILE_GRACE_MS: '500',
    });
    const worker = await startWorker(config);
    try {
      const summary = await worker.reconciled;
      expect(summary?.kinds.orphan_container).toMatchObject({ found: 1, removed: 1, failed: 0 });
      expect(await exists(hc)).toBe(false);
      expect(await exists(foreignSimilar)).toBe(true);
    } finally {
      await worker.close();
    }
  });
});
