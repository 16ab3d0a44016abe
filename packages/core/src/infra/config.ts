import { z } from 'zod';
import { loadApiKeys, type ApiKey } from '../auth/api-keys';

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
  SESSIONBOX_POOL_MAX_AGE_SECONDS: int(1800, 10, 86400),
  SESSIONBOX_STALLED_INTERVAL_MS: int(30_000, 1000),
  SESSIONBOX_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SESSIONBOX_RECONCILE_ON_START: bool.default(true),
  SESSIONBOX_MAX_FILE_BYTES: int(50 * 1024 * 1024, 1),
  /** Unset: each session's own diskMb, at most 500 MiB. */
  SESSIONBOX_MAX_SESSION_FILES_BYTES: z.coerce.number().int().min(1).optional(),
  SESSIONBOX_ARCHIVE_SECONDS: int(86400, 1),
  SESSIONBOX_MAX_ARCHIVE_BYTES: int(100 * 1024 * 1024, 1024),
  SESSIONBOX_ARCHIVE_DIR: z.string().min(1).default('/var/lib/sessionbox/archives'),
  SESSIONBOX_TOOL_TEXT_BUDGET: int(4000, 200, 1_000_000),
  SESSIONBOX_RECONCILE_GRACE_MS: int(10_000, 0, 3_600_000),
  SESSIONBOX_HOST_CHECK_INTERVAL_MS: int(2000, 100, 600_000),
  SESSIONBOX_HOST_DOWN_AFTER_FAILURES: int(3, 1, 1000),
  /** Unset: the worker serves no HTTP; set: `/metrics` and `/healthz` on this port (bound like the API, SESSIONBOX_HOST). */
  SESSIONBOX_WORKER_METRICS_PORT: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(0).max(65535).optional()),
  /** `name:key[:maxSessions[:executionsPerMinute]],…`; none (and no file, no admin key): open API, localhost only. */
  SESSIONBOX_API_KEYS: z.string().optional(),
  SESSIONBOX_API_KEYS_FILE: z.string().optional(),
  SESSIONBOX_ADMIN_KEY: z.string().optional(),
  /** Unset: 50 per key when keys are configured, no limit otherwise; 0 = no limit. */
  SESSIONBOX_KEY_MAX_SESSIONS: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(0).optional()),
  /** Unset: 600 per key when keys are configured, no limit otherwise; 0 = no limit. */
  SESSIONBOX_KEY_EXECUTIONS_PER_MINUTE: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(0).optional()),
  /** Unset: 16 per key when keys are configured, no limit otherwise; 0 = no limit. Sessions of a key with code in flight. */
  SESSIONBOX_KEY_MAX_RUNNING_EXECUTIONS: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(0).optional()),
  /** Unset: 200 per key when keys are configured, no limit otherwise; 0 = no limit. Executions of a key not yet finished. */
  SESSIONBOX_KEY_MAX_QUEUED_EXECUTIONS: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(0).optional()),
  /** Unset: 51200 MiB per key when keys are configured, no budget otherwise; 0 = none. memoryMb + diskMb over a key's live sessions. */
  SESSIONBOX_KEY_MAX_MEMORY_MB: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(0).optional()),
  /** Unset: 50 per key when keys are configured, no budget otherwise; 0 = none. cpus over a key's live sessions. */
  SESSIONBOX_KEY_MAX_CPUS: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().min(0).optional()),
  /** Ceilings of one session's limits (a create asking for more is refused with 400 naming the limit). */
  SESSIONBOX_MAX_MEMORY_MB: int(8192, 64, 65536),
  SESSIONBOX_MAX_DISK_MB: int(4096, 16, 16384),
  SESSIONBOX_MAX_CPUS: z.coerce.number().min(0.05).max(64).default(4),
  SESSIONBOX_MAX_PIDS: int(1024, 16, 4096),
  /** Memory of each Docker host (MiB); unset: what its engine reports (`docker info` MemTotal). */
  SESSIONBOX_HOST_MEMORY_MB: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(256).optional()),
  /** Engine memory caps of a host's live sessions may add up to this many times its memory. */
  SESSIONBOX_HOST_MEMORY_OVERCOMMIT: z.coerce.number().min(0.1).max(100).default(4),
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
  /** A warm container listed longer than this is replaced, never handed out. */
  poolMaxAgeSeconds: number;
  stalledIntervalMs: number;
  logLevel: Env['SESSIONBOX_LOG_LEVEL'];
  reconcileOnStart: boolean;
  maxFileBytes: number;
  /** Cap on all files of one session; null = the session's diskMb, at most 500 MiB. */
  maxSessionFilesBytes: number | null;
  archiveSeconds: number;
  maxArchiveBytes: number;
  archiveDir: string;
  /** Max characters of the text an LLM tool call returns to the model. */
  toolTextBudget: number;
  /** Containers and records younger than this are being born: cleanup leaves them alone. */
  reconcileGraceMs: number;
  /** The worker pings its engine this often; after `hostDownAfterFailures` misses in a row the host is down. */
  hostCheckIntervalMs: number;
  hostDownAfterFailures: number;
  /** null: the worker serves no HTTP. */
  workerMetricsPort: number | null;
  /** Tenants (`SESSIONBOX_API_KEYS` and `SESSIONBOX_API_KEYS_FILE`). */
  apiKeys: ApiKey[];
  /** Sees and touches every session (`SESSIONBOX_ADMIN_KEY`). */
  adminKey: string | null;
  /** Per-key defaults (a key's own values win); null or 0 = no limit. */
  keyMaxSessions: number | null;
  keyExecutionsPerMinute: number | null;
  keyMaxRunningExecutions: number | null;
  keyMaxQueuedExecutions: number | null;
  keyMaxMemoryMb: number | null;
  keyMaxCpus: number | null;
  /** Ceilings of one session's limits. */
  maxSessionLimits: { memoryMb: number; diskMb: number; cpus: number; pids: number };
  /** null: each engine's MemTotal. */
  hostMemoryMb: number | null;
  hostMemoryOvercommit: number;
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
  let auth: ReturnType<typeof loadApiKeys>;
  try {
    auth = loadApiKeys({ list: e.SESSIONBOX_API_KEYS, file: e.SESSIONBOX_API_KEYS_FILE, adminKey: e.SESSIONBOX_ADMIN_KEY });
  } catch (err) {
    throw new Error(`invalid configuration: ${(err as Error).message}`);
  }
  const keyed = auth.keys.length > 0 || auth.adminKey !== null;
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
    poolMaxAgeSeconds: e.SESSIONBOX_POOL_MAX_AGE_SECONDS,
    stalledIntervalMs: e.SESSIONBOX_STALLED_INTERVAL_MS,
    logLevel: e.SESSIONBOX_LOG_LEVEL,
    reconcileOnStart: e.SESSIONBOX_RECONCILE_ON_START,
    maxFileBytes: e.SESSIONBOX_MAX_FILE_BYTES,
    maxSessionFilesBytes: e.SESSIONBOX_MAX_SESSION_FILES_BYTES ?? null,
    archiveSeconds: e.SESSIONBOX_ARCHIVE_SECONDS,
    maxArchiveBytes: e.SESSIONBOX_MAX_ARCHIVE_BYTES,
    archiveDir: e.SESSIONBOX_ARCHIVE_DIR,
    toolTextBudget: e.SESSIONBOX_TOOL_TEXT_BUDGET,
    reconcileGraceMs: e.SESSIONBOX_RECONCILE_GRACE_MS,
    hostCheckIntervalMs: e.SESSIONBOX_HOST_CHECK_INTERVAL_MS,
    hostDownAfterFailures: e.SESSIONBOX_HOST_DOWN_AFTER_FAILURES,
    workerMetricsPort: e.SESSIONBOX_WORKER_METRICS_PORT ?? null,
    apiKeys: auth.keys,
    adminKey: auth.adminKey,
    keyMaxSessions: e.SESSIONBOX_KEY_MAX_SESSIONS ?? (keyed ? 50 : null),
    keyExecutionsPerMinute: e.SESSIONBOX_KEY_EXECUTIONS_PER_MINUTE ?? (keyed ? 600 : null),
    keyMaxRunningExecutions: e.SESSIONBOX_KEY_MAX_RUNNING_EXECUTIONS ?? (keyed ? 16 : null),
    keyMaxQueuedExecutions: e.SESSIONBOX_KEY_MAX_QUEUED_EXECUTIONS ?? (keyed ? 200 : null),
    keyMaxMemoryMb: e.SESSIONBOX_KEY_MAX_MEMORY_MB ?? (keyed ? 51200 : null),
    keyMaxCpus: e.SESSIONBOX_KEY_MAX_CPUS ?? (keyed ? 50 : null),
    maxSessionLimits: { memoryMb: e.SESSIONBOX_MAX_MEMORY_MB, diskMb: e.SESSIONBOX_MAX_DISK_MB, cpus: e.SESSIONBOX_MAX_CPUS, pids: e.SESSIONBOX_MAX_PIDS },
    hostMemoryMb: e.SESSIONBOX_HOST_MEMORY_MB ?? null,
    hostMemoryOvercommit: e.SESSIONBOX_HOST_MEMORY_OVERCOMMIT,
  };
}
