import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Http, docker, waitFor } from '../helpers/system';

/**
 * compose.yaml, the way a machine with no registry runs it: images built offline
 * (scripts/build-offline-images.sh), then `docker compose up` (or Debian's docker-compose v1) on
 * a project of its own, a session run through the composed API, and `down -v`.
 */
const run = promisify(execFile);
const ROOT = join(__dirname, '../..');
const project = `sessionbox-e2e-${Math.random().toString(36).slice(2, 8)}`;
let compose: string[] = [];
let env: NodeJS.ProcessEnv = {};
let port = 0;

async function composeCommand(): Promise<string[]> {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    const ok = await run(cmd[0], [...cmd.slice(1), 'version'], { timeout: 30_000 }).then(
      () => true,
      () => false,
    );
    if (ok) return cmd;
  }
  throw new Error('neither `docker compose` nor `docker-compose` is installed (scripts/test-e2e.sh installs docker-compose)');
}

const composeRun = (args: string[], timeout = 15 * 60_000) =>
  run(compose[0], [...compose.slice(1), '-p', project, '-f', join(ROOT, 'compose.yaml'), ...args], {
    cwd: ROOT,
    env,
    timeout,
    maxBuffer: 64 * 1024 * 1024,
  });

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

const projectContainers = () => docker.listContainers({ all: true, filters: { label: [`com.docker.compose.project=${project}`] } });
const service = async (name: string) => {
  const c = (await projectContainers()).find((x) => x.Labels['com.docker.compose.service'] === name);
  if (!c) throw new Error(`no container for service ${name}`);
  return docker.getContainer(c.Id).inspect();
};

async function execOut(containerId: string, cmd: string[]): Promise<string> {
  const exec = await docker.getContainer(containerId).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((resolve) => stream.on('end', resolve));
  // Multiplexed frames: 8-byte header, then the payload.
  const buf = Buffer.concat(chunks);
  let out = '';
  for (let i = 0; i + 8 <= buf.length; ) {
    const n = buf.readUInt32BE(i + 4);
    out += buf.subarray(i + 8, i + 8 + n).toString('utf8');
    i += 8 + n;
  }
  return out;
}

describe('compose.yaml, built offline', () => {
  let http: Http;

  beforeAll(async () => {
    compose = await composeCommand();
    const base = 'sessionbox/debian-base:bookworm';
    const haveBase = await docker
      .getImage(base)
      .inspect()
      .then(() => true)
      .catch(() => false);
    const { stdout } = await run('bash', [join(ROOT, 'scripts/build-offline-images.sh')], {
      cwd: ROOT,
      env: { ...process.env, ...(haveBase ? { SESSIONBOX_BASE_IMAGE: base } : {}) },
      timeout: 30 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    const vars = Object.fromEntries(
      stdout
        .split('\n')
        .map((l) => /^([A-Z_]+)=(.*)$/.exec(l.trim()))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [m[1], m[2]]),
    );
    expect(Object.keys(vars).sort()).toEqual(['SESSIONBOX_BASE_IMAGE', 'SESSIONBOX_DEPS_IMAGE', 'SESSIONBOX_IMAGE', 'SESSIONBOX_NODE_IMAGE']);
    port = await freePort();
    env = { ...process.env, ...vars, SESSIONBOX_NAMESPACE: project, SESSIONBOX_HTTP_PORT: String(port), SESSIONBOX_LOG_LEVEL: 'warn' };
    // The test's own settings must not leak into the stack.
    delete env.SESSIONBOX_REDIS_URL;
    delete env.SESSIONBOX_DOCKER_HOSTS;
    await composeRun(['build', 'redis', 'api', 'worker']);
    await composeRun(['up', '-d']);
    http = new Http(`http://127.0.0.1:${port}`);
    await waitFor(
      async () => {
        const states = await Promise.all(['redis', 'api', 'worker'].map(async (s) => (await service(s)).State.Health?.Status));
        return states.every((s) => s === 'healthy');
      },
      180_000,
      1000,
    );
  }, 40 * 60_000);

  afterAll(async () => {
    if (compose.length) await composeRun(['down', '-v', '--remove-orphans'], 5 * 60_000).catch(() => undefined);
    // Session containers are the api's, not compose's: they carry the stack's namespace label.
    for (const c of await docker.listContainers({ all: true, filters: { label: [`sessionbox.namespace=${project}`] } })) {
      await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    }
    for (const c of await projectContainers()) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
  }, 10 * 60_000);

  test('the stack is healthy; only api and worker hold the Docker socket; Redis persists and never evicts', async () => {
    const mounts = async (s: string) => (await service(s)).Mounts.map((m) => m.Destination);
    expect(await mounts('api')).toContain('/var/run/docker.sock');
    expect(await mounts('worker')).toContain('/var/run/docker.sock');
    expect(await mounts('redis')).not.toContain('/var/run/docker.sock');
    expect(await mounts('python-runner')).not.toContain('/var/run/docker.sock');
    const runner = await service('python-runner');
    expect(runner.State.Status).toBe('exited');
    expect(runner.State.ExitCode).toBe(0);

    const redis = (await service('redis')).Id;
    expect(await execOut(redis, ['redis-cli', 'config', 'get', 'appendonly'])).toBe('appendonly\nyes\n');
    expect(await execOut(redis, ['redis-cli', 'config', 'get', 'maxmemory-policy'])).toBe('maxmemory-policy\nnoeviction\n');

    const health = await http.get('/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok', checks: { redis: 'ok', 'docker:local': 'ok' } });
  });

  test('a session runs code through the composed API, in a container labelled with the stack namespace', async () => {
    const s = await http.createSession({ metadata: { from: 'compose-e2e' } });
    const r = await http.run(s.id, 'import platform\nprint(platform.python_version())\n6 * 7');
    expect(r.status).toBe('succeeded');
    expect(r.result).toBe('42');
    expect(r.stdout).toMatch(/^3\.\d+\.\d+\n$/);

    const mine = await docker.listContainers({ all: true, filters: { label: [`sessionbox.namespace=${project}`, `sessionbox.session-id=${s.id}`] } });
    expect(mine).toHaveLength(1);
    expect(mine[0].State).toBe('running');
    expect(mine[0].Image).toBe(env.SESSIONBOX_IMAGE);

    const metrics = (await http.get('/metrics')).raw.toString('utf8');
    expect(metrics).toMatch(/^sessionbox_sessions_live\{host="local",status="ready"\} 1$/m);

    expect((await http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    expect(await docker.listContainers({ all: true, filters: { label: [`sessionbox.session-id=${s.id}`] } })).toHaveLength(0);
  });
});
