import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * deploy/dify/docker-compose.sessionbox.yaml over (an excerpt of) Dify's docker-compose.yaml, in a
 * directory laid out like Dify's docker/ with its .env: `config` must put sessionbox's api where
 * Dify's `sandbox` was (port 8194, Dify's network, the key from Dify's .env), and refuse without a key.
 */
const run = promisify(execFile);
const ROOT = join(__dirname, '../..');
const OVERRIDE = join(ROOT, 'deploy/dify/docker-compose.sessionbox.yaml');
const KEY = 'sk-0123456789abcdef0123';
let dir = '';
let compose: string[] = [];

beforeAll(async () => {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    if (await run(cmd[0], [...cmd.slice(1), 'version'], { timeout: 30_000 }).then(() => true, () => false)) {
      compose = cmd;
      break;
    }
  }
  if (!compose.length) throw new Error('neither `docker compose` nor `docker-compose` is installed (scripts/test-e2e.sh installs docker-compose)');
  dir = mkdtempSync(join(tmpdir(), 'dify-docker-'));
  copyFileSync(join(__dirname, 'fixtures/dify-compose.excerpt.yaml'), join(dir, 'docker-compose.yaml'));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const config = (env: string) => {
  writeFileSync(join(dir, '.env'), env);
  return run(compose[0], [...compose.slice(1), '-f', 'docker-compose.yaml', '-f', OVERRIDE, 'config'], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/root' },
    timeout: 60_000,
  });
};

test('the override puts sessionbox where Dify\'s sandbox was, with the key of Dify\'s .env', async () => {
  const { stdout } = await config(`CODE_EXECUTION_API_KEY=${KEY}\n`);
  const sandbox = /\n {2}sandbox:\n([\s\S]*?)\n {2}\S/.exec(stdout)?.[1] ?? '';
  expect(sandbox).toMatch(/image: sessionbox\/api:latest/);
  expect(sandbox).toMatch(/SESSIONBOX_PORT: '?"?8194/);
  expect(sandbox).toContain(`SESSIONBOX_API_KEYS: dify:${KEY}`);
  expect(sandbox).toMatch(/SESSIONBOX_DIFY_ALLOW_NETWORK: '?"?false/);
  expect(sandbox).toContain('ssrf_proxy_network');
  expect(sandbox).toContain('/var/run/docker.sock:/var/run/docker.sock');
  // Dify's api keeps its default endpoint and gets the same key.
  const api = /\n {2}api:\n([\s\S]*?)\n {2}\S/.exec(stdout)?.[1] ?? '';
  expect(api).toContain('CODE_EXECUTION_ENDPOINT: http://sandbox:8194');
  expect(api).toContain(`CODE_EXECUTION_API_KEY: ${KEY}`);
  expect(stdout).toMatch(/\n {2}sessionbox-worker:\n/);
  expect(stdout).toMatch(/\n {2}sessionbox-redis:\n/);
});

test('without CODE_EXECUTION_API_KEY in Dify\'s .env the override refuses to start', async () => {
  const err = await config('').then(() => null, (e: { stderr?: string }) => e);
  expect(err).not.toBeNull();
  expect(err!.stderr).toContain('set CODE_EXECUTION_API_KEY');
});
