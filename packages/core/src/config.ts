import { z } from 'zod';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max).default(def);

/** One Docker engine the system may place sessions on: `name=endpoint[@capacity]`. */
const DockerHostSchema = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/),
  endpoint: z.string(),
  capacity: z.number().int().positive(),
});
export type DockerHostConfig = z.infer<typeof DockerHostSchema>;

function parseHosts(raw: string, defaultCapacity: number): DockerHostConfig[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const m = /^([^=]+)=([^@]+)(?:@(\d+))?$/.exec(entry);
      if (!m) throw new Error(`SESSIONBOX_DOCKER_HOSTS entry "${entry}" is not name=endpoint[@capacity]`);
      return DockerHostSchema.parse({ name: m[1], endpoint: m[2], capacity: m[3] ? Number(m[3]) : defaultCapacity });
    });
}

/** Every setting of api, worker and CLI; parsed once at start (`loadConfig(env)`), never read ad hoc. */
export const EnvSchema = z.object({
  SESSIONBOX_PORT: int(8000, 0, 65535),
  SESSIONBOX_HOST: z.string().optional(),
  SESSIONBOX_PUBLIC_URL: z.string().url().optional(),
  SESSIONBOX_REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  SESSIONBOX_NAMESPACE: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,40}$/).default('default'),
  SESSIONBOX_IMAGE: z.string().default('sessionbox/python-runner:latest'),
  SESSIONBOX_RUNTIME: z.enum(['runc', 'runsc']).default('runc'),
  SESSIONBOX_DOCKER_HOSTS: z.string().default('local=unix:///var/run/docker.sock'),
  SESSIONBOX_HOST_CAPACITY: int(300, 1),
  SESSIONBOX_WORKER_HOST: z.string().optional(),
  SESSIONBOX_WORKER_CONCURRENCY: int(64, 1, 1024),
  SESSIONBOX_DEFAULT_TTL_SECONDS: int(600, 10, 86400),
  SESSIONBOX_TOMBSTONE_SECONDS: int(86400, 10),
  SESSIONBOX_REAPER_INTERVAL_MS: int(1000, 50),
  SESSIONBOX_MAX_OUTPUT_BYTES: int(1024 * 1024, 1024),
  SESSIONBOX_MAX_CODE_BYTES: int(1024 * 1024, 1024),
  SESSIONBOX_MAX_TIMEOUT_MS: int(600_000, 1000),
  SESSIONBOX_MAX_FIGURES: int(50, 1, 1000),
  SESSIONBOX_MAX_FIGURE_PIXELS: int(25_000_000, 10_000),
  SESSIONBOX_POOL_SIZE: int(0, 0, 1000),
  SESSIONBOX_STALLED_INTERVAL_MS: int(30_000, 1000),
  SESSIONBOX_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SESSIONBOX_RECONCILE_ON_START: bool.default(true),
});
export type Env = z.infer<typeof EnvSchema>;

export interface Config {
  port: number;
  host: string | undefined;
  publicUrl: string | undefined;
  redisUrl: string;
  namespace: string;
  image: string;
  runtime: 'runc' | 'runsc';
  dockerHosts: DockerHostConfig[];
  workerHost: string;
  workerConcurrency: number;
  defaultTtlSeconds: number;
  tombstoneSeconds: number;
  reaperIntervalMs: number;
  maxOutputBytes: number;
  maxCodeBytes: number;
  maxTimeoutMs: number;
  maxFigures: number;
  maxFigurePixels: number;
  poolSize: number;
  stalledIntervalMs: number;
  logLevel: Env['SESSIONBOX_LOG_LEVEL'];
  reconcileOnStart: boolean;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const dockerHosts = parseHosts(e.SESSIONBOX_DOCKER_HOSTS, e.SESSIONBOX_HOST_CAPACITY);
  if (dockerHosts.length === 0) throw new Error('invalid configuration: SESSIONBOX_DOCKER_HOSTS names no host');
  const workerHost = e.SESSIONBOX_WORKER_HOST ?? dockerHosts[0].name;
  if (!dockerHosts.some((h) => h.name === workerHost)) {
    throw new Error(`invalid configuration: SESSIONBOX_WORKER_HOST "${workerHost}" is not in SESSIONBOX_DOCKER_HOSTS`);
  }
  return {
    port: e.SESSIONBOX_PORT,
    host: e.SESSIONBOX_HOST,
    publicUrl: e.SESSIONBOX_PUBLIC_URL,
    redisUrl: e.SESSIONBOX_REDIS_URL,
    namespace: e.SESSIONBOX_NAMESPACE,
    image: e.SESSIONBOX_IMAGE,
    runtime: e.SESSIONBOX_RUNTIME,
    dockerHosts,
    workerHost,
    workerConcurrency: e.SESSIONBOX_WORKER_CONCURRENCY,
    defaultTtlSeconds: e.SESSIONBOX_DEFAULT_TTL_SECONDS,
    tombstoneSeconds: e.SESSIONBOX_TOMBSTONE_SECONDS,
    reaperIntervalMs: e.SESSIONBOX_REAPER_INTERVAL_MS,
    maxOutputBytes: e.SESSIONBOX_MAX_OUTPUT_BYTES,
    maxCodeBytes: e.SESSIONBOX_MAX_CODE_BYTES,
    maxTimeoutMs: e.SESSIONBOX_MAX_TIMEOUT_MS,
    maxFigures: e.SESSIONBOX_MAX_FIGURES,
    maxFigurePixels: e.SESSIONBOX_MAX_FIGURE_PIXELS,
    poolSize: e.SESSIONBOX_POOL_SIZE,
    stalledIntervalMs: e.SESSIONBOX_STALLED_INTERVAL_MS,
    logLevel: e.SESSIONBOX_LOG_LEVEL,
    reconcileOnStart: e.SESSIONBOX_RECONCILE_ON_START,
  };
}
