import { runAdminCli, type CliResult } from './helpers/admin-cli';
import { Http, startSystem, type TestSystem } from './helpers/system';

/**
 * The `/v1/admin/…` routes, and the admin CLI using them (`--url`, SESSIONBOX_URL), against a real
 * api + worker, real Docker and Redis.
 */
const ALICE = 'admin-api-alice-key-0123456789';
const ADMIN = 'admin-api-admin-key-0123456789';

let sys: TestSystem;
let alice: Http;
let admin: Http;

function cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  // No Redis URL on purpose: with --url the CLI talks to the API only.
  return runAdminCli(args, { SESSIONBOX_REDIS_URL: 'redis://127.0.0.1:1', SESSIONBOX_URL: sys.url, ...env });
}

beforeAll(async () => {
  sys = await startSystem({ SESSIONBOX_API_KEYS: `alice:${ALICE}`, SESSIONBOX_ADMIN_KEY: ADMIN });
  alice = new Http(sys.url, { authorization: `Bearer ${ALICE}` });
  admin = new Http(sys.url, { authorization: `Bearer ${ADMIN}` });
});

afterAll(async () => {
  await sys?.stop();
});

test('admin routes: sessions of every tenant with owner and usage, hosts, stats; a tenant key gets 403', async () => {
  const s = await alice.createSession({ metadata: { who: 'alice' } });
  await alice.run(s.id, 'print(1)');
  const list = await admin.get('/v1/admin/sessions');
  expect(list.status).toBe(200);
  const row = list.body.sessions.find((r: { id: string }) => r.id === s.id);
  expect(row).toMatchObject({ owner: 'alice', state: 'ready', executions: 1, host: sys.config.dockerHosts[0].name });
  expect(row.memoryBytes).toBeGreaterThan(0);
  expect(row.ttlLeftSeconds).toBeGreaterThan(500);
  const hosts = await admin.get('/v1/admin/hosts');
  expect(hosts.body.hosts[0]).toMatchObject({ name: sys.config.dockerHosts[0].name, engine: 'ok', takesSessions: true, liveSessions: 1 });
  const stats = await admin.get('/v1/admin/stats?minutes=5');
  expect(stats.body.perMinute).toHaveLength(5);
  expect(stats.body.perMinute.reduce((n: number, m: { executions: number }) => n + m.executions, 0)).toBe(1);
  for (const path of ['/v1/admin/sessions', '/v1/admin/hosts', '/v1/admin/stats']) {
    const r = await alice.get(path);
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('admin_only');
  }
  expect((await admin.post('/v1/admin/cleanup', { dryRun: true, kinds: ['nope'] })).status).toBe(400);
  expect((await admin.post('/v1/admin/cleanup/5b8f1c1e-8d2e-4c55-9a3b-2f6f2b0e9c11/apply')).status).toBe(404);
});

test('the CLI with --url: cleanup dry-run, kill, and a clear error for a wrong key', async () => {
  const s = await alice.createSession();
  const dry = await cli(['cleanup', '--dry-run', '--json'], { SESSIONBOX_ADMIN_KEY: ADMIN });
  expect(dry.code).toBe(0);
  expect(JSON.parse(dry.stdout)).toMatchObject({ namespace: sys.config.namespace, dryRun: true });

  const denied = await cli(['kill', s.id], { SESSIONBOX_ADMIN_KEY: 'wrong' });
  expect(denied.code).toBe(1);
  expect(denied.stderr).toMatch(/401/);
  expect((await alice.get(`/v1/sessions/${s.id}`)).status).toBe(200);

  const killed = await cli(['kill', s.id, '--json', '--url', sys.url, '--key', ADMIN], { SESSIONBOX_URL: '' });
  expect(killed.code).toBe(0);
  expect(JSON.parse(killed.stdout).results[0]).toMatchObject({ id: s.id, outcome: 'terminated', containersRemoved: 1 });
  expect((await alice.get(`/v1/sessions/${s.id}`)).status).toBe(410);

  const applied = await cli(['cleanup', '--json'], { SESSIONBOX_ADMIN_KEY: ADMIN });
  expect(applied.code).toBe(0);
  expect(JSON.parse(applied.stdout).dryRun).toBe(false);

  const ls = await cli(['ls'], { SESSIONBOX_ADMIN_KEY: ADMIN });
  expect(ls.code).toBe(2);
  expect(ls.stderr).toContain('--url serves kill and cleanup');
});
