import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { startApi, type RunningApi } from '../../apps/api/src/server';
import { startWorker, type RunningWorker } from '../../apps/worker/src/worker';
import { Http, docker as engine1, removeNamespace, testConfig, testNamespace, waitFor } from '../helpers/system';

/**
 * Two real Docker engines on this machine (the main one, and a second dockerd with its own socket,
 * data root and containerd: scripts/second-engine.sh), one worker per engine, one API for both.
 */
const run = promisify(execFile);
const SCRIPT = join(__dirname, '../../scripts/second-engine.sh');
const SOCK2 = '/run/sessionbox-test-docker2.sock';
const engine2 = new Docker({ socketPath: SOCK2 });
const engineOf = (host: string) => (host === 'h1' ? engine1 : engine2);

async function secondEngine(cmd: 'start' | 'stop' | 'crash') {
  const { stdout } = await run('bash', [SCRIPT, cmd], { timeout: 10 * 60_000, env: { ...process.env, SESSIONBOX_ENGINE2_NAME: 'sessionbox-test-docker2' } });
  return stdout.trim();
}

async function execIn(engine: Docker, containerId: string, cmd: string[]): Promise<string> {
  const exec = await engine.getContainer(containerId).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out: Buffer[] = [];
  const { PassThrough } = await import('node:stream');
  const stdout = new PassThrough();
  stdout.on('data', (c: Buffer) => out.push(c));
  engine.modem.demuxStream(stream, stdout, new PassThrough());
  await new Promise((resolve) => stream.on('end', resolve));
  return Buffer.concat(out).toString('utf8');
}

const exists = (engine: Docker, id: string) =>
  engine
    .getContainer(id)
    .inspect()
    .then(() => true)
    .catch(() => false);

const nsContainers = (engine: Docker, ns: string) => engine.listContainers({ all: true, filters: { label: [`sessionbox.namespace=${ns}`] } });

describe('several Docker hosts behind one API', () => {
  const namespace = testNamespace('mh');
  let workers: RunningWorker[] = [];
  let api: RunningApi;
  let http: Http;

  beforeAll(async () => {
    const hadDocker0 = existsSync('/sys/class/net/docker0');
    const endpoint = await secondEngine('start');
    expect(endpoint).toBe(`unix://${SOCK2}`);
    // The second engine must leave the main engine's bridge alone (a `--bridge=none` dockerd deletes it).
    expect(existsSync('/sys/class/net/docker0')).toBe(hadDocker0);
    const env = {
      SESSIONBOX_NAMESPACE: namespace,
      SESSIONBOX_DOCKER_HOSTS: `h1=unix:///var/run/docker.sock@2,h2=${endpoint}@2`,
      SESSIONBOX_HOST_CHECK_INTERVAL_MS: '300',
      SESSIONBOX_HOST_DOWN_AFTER_FAILURES: '2',
      SESSIONBOX_RECONCILE_GRACE_MS: '1000',
    };
    workers = [await startWorker(testConfig({ ...env, SESSIONBOX_WORKER_HOST: 'h1' })), await startWorker(testConfig({ ...env, SESSIONBOX_WORKER_HOST: 'h2' }))];
    api = await startApi(testConfig(env));
    http = new Http(api.url);
  }, 15 * 60_000);

  afterAll(async () => {
    await api?.close();
    for (const w of workers) await w.close();
    await secondEngine('start').catch(() => undefined);
    for (const c of await nsContainers(engine2, namespace).catch(() => [])) await engine2.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    await removeNamespace(namespace);
    await secondEngine('stop');
  }, 5 * 60_000);

  const hostUp = async (host: string) => {
    const text = (await http.get('/metrics')).raw.toString('utf8');
    const m = new RegExp(`^sessionbox_host_up\\{host="${host}"\\} (\\d)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };

  test('sessions spread least-loaded first, run where their container is, and a host that goes away and comes back is handled', async () => {
    // Placement: least-loaded first, so the two hosts take turns until both are full.
    const sessions: { id: string; host: string; containerId: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const s = await http.createSession();
      const rec = await api.ctx.core.sessionStore.get(s.id);
      expect(rec!.host).toBe(s.host);
      sessions.push({ id: s.id, host: s.host, containerId: rec!.containerId });
    }
    expect(sessions.map((s) => s.host)).toEqual(['h1', 'h2', 'h1', 'h2']);
    const full = await http.post('/v1/sessions', {});
    expect(full.status).toBe(503);
    expect(full.body.error.code).toBe('capacity_exhausted');

    // Each container is on the engine its record names, and only there.
    for (const s of sessions) {
      const info = await engineOf(s.host).getContainer(s.containerId).inspect();
      expect(info.Config.Labels['sessionbox.session-id']).toBe(s.id);
      expect(info.Config.Labels['sessionbox.host']).toBe(s.host);
      expect(await exists(engineOf(s.host === 'h1' ? 'h2' : 'h1'), s.containerId)).toBe(false);
    }

    // Code runs in that container: it writes a file named after its session, and each engine shows
    // the file in that container alone. Its cgroup path names the container it runs in.
    for (const s of sessions) {
      const r = await http.run(s.id, `open(${JSON.stringify(`/work/${s.id}.txt`)}, "w").write("x")\nprint(open("/proc/self/cgroup").read())`);
      expect(r.status).toBe('succeeded');
      const ids = new Set(r.stdout.match(/[0-9a-f]{64}/g) ?? []);
      // a private cgroup namespace (the default on cgroup v2) shows the container its own root, no id
      const { HostConfig } = (await engineOf(s.host).getContainer(s.containerId).inspect()) as { HostConfig: { CgroupnsMode?: string } };
      expect([...ids]).toEqual(HostConfig.CgroupnsMode === 'private' ? [] : [s.containerId]);
    }
    for (const s of sessions) {
      expect((await execIn(engineOf(s.host), s.containerId, ['ls', '/work'])).trim()).toBe(`${s.id}.txt`);
    }

    // The second engine crashes: its sessions end (410, host_down), it takes no new ones.
    const [s1, s2, , s4] = sessions;
    await secondEngine('crash');
    for (const s of [s2, s4]) {
      const gone = await waitFor(async () => {
        const r = await http.get(`/v1/sessions/${s.id}`);
        return r.status === 410 ? r : null;
      }, 30_000, 200);
      expect(gone.body.error.code).toBe('session_terminated');
      expect(gone.body.error.message).toContain('host_down');
    }
    expect(await hostUp('h2')).toBe(0);
    expect(await hostUp('h1')).toBe(1);
    const refused = await http.post('/v1/sessions', {});
    expect(refused.status).toBe(503); // h1 is full, h2 is down
    expect(refused.body.error.code).toBe('capacity_exhausted');
    expect((await http.delete(`/v1/sessions/${s1.id}`)).status).toBe(204);
    const onH1 = await http.createSession();
    expect(onH1.host).toBe('h1');
    expect((await http.run(onH1.id, 'print("h1 still works")')).stdout).toBe('h1 still works\n');

    // It comes back: the containers of its ended sessions are removed, and it takes sessions again.
    await secondEngine('start');
    await waitFor(async () => (await hostUp('h2')) === 1, 30_000, 200);
    await waitFor(async () => (await nsContainers(engine2, namespace)).length === 0, 30_000, 250);
    const onH2 = await http.createSession();
    expect(onH2.host).toBe('h2');
    const r = await http.run(onH2.id, 'print(sum(range(10)))');
    expect(r.stdout).toBe('45\n');
    const rec = await api.ctx.core.sessionStore.get(onH2.id);
    expect(await exists(engine2, rec!.containerId)).toBe(true);
  });
});
