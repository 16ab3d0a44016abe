import { z } from 'zod';
import { loadApiKeys } from '../auth/api-keys';
import { commaList } from './comma-list';
import { errMsg } from './err-msg';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (def: number, min = 0, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max).default(def);
/** An integer that may be unset; an empty string counts as unset. */
const optionalInt = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(min).max(max).optional());

/** One Docker engine the system may place sessions on: `name=endpoint[@capacity]`. */
const DockerHostSchema = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,31}$/),
  endpoint: z.string(),
  capacity: z.number().int().positive(),
});
export type DockerHostConfig = z.infer<typeof DockerHostSchema>;

/** `name=endpoint[@capacity]`; a missing capacity is filled from SESSIONBOX_HOST_CAPACITY. */
const DockerHostEntry = z.string().transform((entry, ctx) => {
  const m = /^([^=]+)=([^@]+)(?:@(\d+))?$/.exec(entry);
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `entry "${entry}" is not name=endpoint[@capacity]` });
    return z.NEVER;
  }
  return { name: m[1], endpoint: m[2], capacity: m[3] === undefined ? null : Number(m[3]) };
}).pipe(DockerHostSchema.extend({ capacity: DockerHostSchema.shape.capacity.nullable() }));

/** Every setting of api, worker and CLI, by its environment name, with its default. */
export const EnvSchema = z.object({
  SESSIONBOX_PORT: int(8000, 0, 65535),
  SESSIONBOX_HOST: z.string().optional(),
  SESSIONBOX_PUBLIC_URL: z.string().url().optional(),
  SESSIONBOX_REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  SESSIONBOX_NAMESPACE: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,40}$/).default('default'),
  SESSIONBOX_IMAGE: z.string().default('sessionbox/python-runner:latest'),
  SESSIONBOX_RUNTIME: z.enum(['runc', 'runsc']).default('runc'),
  SESSIONBOX_DOCKER_HOSTS: commaList.pipe(z.array(DockerHostEntry)).prefault('local=unix:///var/run/docker.sock'),
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
  /** One figure's PNG; a larger one is dropped with a note (the channel's line cap is 32 MiB). */
  SESSIONBOX_MAX_FIGURE_BYTES: int(4 * 1024 * 1024, 1024, 6 * 1024 * 1024),
  /** All figures a session keeps in Redis while it lives. */
  SESSIONBOX_MAX_SESSION_FIGURE_BYTES: int(64 * 1024 * 1024, 1024),
  SESSIONBOX_POOL_SIZE: int(0, 0, 1000),
  /** Lazy warm containers on top (≈ 20 MiB each, imports on first use): a burst's `print` answers at once. */
  SESSIONBOX_POOL_LAZY_SIZE: int(0, 0, 1000),
  SESSIONBOX_POOL_MAX_AGE_SECONDS: int(1800, 10, 86400),
  /** Memory the pool may grow into with demand (MiB, ≈ 80 per idle container); 0 keeps it at SESSIONBOX_POOL_SIZE. */
  SESSIONBOX_POOL_MEMORY_MB: int(0, 0, 1_000_000),
  /** The pool grows to the default-limit creates of this last window, and shrinks back once they age out. */
  SESSIONBOX_POOL_DEMAND_WINDOW_SECONDS: int(120, 1, 86400),
  SESSIONBOX_STALLED_INTERVAL_MS: int(30_000, 1000),
  SESSIONBOX_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SESSIONBOX_RECONCILE_ON_START: bool.default(true),
  SESSIONBOX_MAX_FILE_BYTES: int(50 * 1024 * 1024, 1),
  /** Unset: each session's own diskMb, at most 500 MiB. */
  SESSIONBOX_MAX_SESSION_FILES_BYTES: z.coerce.number().int().min(1).optional(),
  SESSIONBOX_ARCHIVE_SECONDS: int(86400, 1),
  SESSIONBOX_ON_IDLE: z.enum(['hibernate', 'destroy']).default('destroy'),
  SESSIONBOX_HIBERNATE_RETENTION_SECONDS: int(7 * 86400, 10),
  /** Unset: each session's own memory limit. */
  SESSIONBOX_HIBERNATE_MAX_STATE_BYTES: z.coerce.number().int().min(1024).optional(),
  /** `auto`: under runsc, checkpoint the whole container when the engine allows it; `off`: always the dill path. */
  SESSIONBOX_HIBERNATE_CHECKPOINT: z.enum(['auto', 'off']).default('auto'),
  SESSIONBOX_MAX_ARCHIVE_BYTES: int(100 * 1024 * 1024, 1024),
  SESSIONBOX_ARCHIVE_DIR: z.string().min(1).default('/var/lib/sessionbox/archives'),
  SESSIONBOX_TOOL_TEXT_BUDGET: int(4000, 200, 1_000_000),
  SESSIONBOX_RECONCILE_GRACE_MS: int(10_000, 0, 3_600_000),
  SESSIONBOX_HOST_CHECK_INTERVAL_MS: int(2000, 100, 600_000),
  SESSIONBOX_HOST_DOWN_AFTER_FAILURES: int(3, 1, 1000),
  /** On SIGTERM: how long in-flight requests (`?wait=true`, event streams) and running jobs get to finish. */
  SESSIONBOX_SHUTDOWN_GRACE_MS: int(30_000, 0, 600_000),
  /** Unset: the worker serves no HTTP; set: `/metrics` and `/healthz` on this port (bound like the API, SESSIONBOX_HOST). */
  SESSIONBOX_WORKER_METRICS_PORT: optionalInt(0, 65535),
  /** `name:key[:maxSessions[:executionsPerMinute]],…`; none (and no file, no admin key): open API, localhost only. */
  SESSIONBOX_API_KEYS: z.string().optional(),
  SESSIONBOX_API_KEYS_FILE: z.string().optional(),
  SESSIONBOX_ADMIN_KEY: z.string().optional(),
  /** Unset: 50 per key when keys are configured, no limit otherwise; 0 = no limit. */
  SESSIONBOX_KEY_MAX_SESSIONS: optionalInt(),
  /** Unset: 600 per key when keys are configured, no limit otherwise; 0 = no limit. */
  SESSIONBOX_KEY_EXECUTIONS_PER_MINUTE: optionalInt(),
  /** Wall-clock limit of one dify-sandbox `/v1/sandbox/run` (Dify's read timeout is 60 s). */
  SESSIONBOX_DIFY_TIMEOUT_MS: int(30_000, 1000, 600_000),
  /** Honour `enable_network: true` of dify-sandbox calls (a run gets a container on the default bridge network). */
  SESSIONBOX_DIFY_ALLOW_NETWORK: bool.default(false),
  /** Unset: 16 per key when keys are configured, no limit otherwise; 0 = no limit. Sessions of a key with code in flight. */
  SESSIONBOX_KEY_MAX_RUNNING_EXECUTIONS: optionalInt(),
  /** Unset: 200 per key when keys are configured, no limit otherwise; 0 = no limit. Executions of a key not yet finished. */
  SESSIONBOX_KEY_MAX_QUEUED_EXECUTIONS: optionalInt(),
  /** Unset: 51200 MiB per key when keys are configured, no budget otherwise; 0 = none. memoryMb + diskMb over a key's live sessions. */
  SESSIONBOX_KEY_MAX_MEMORY_MB: optionalInt(),
  /** Unset: 50 per key when keys are configured, no budget otherwise; 0 = none. cpus over a key's live sessions. */
  SESSIONBOX_KEY_MAX_CPUS: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().min(0).optional()),
  /** Unset: 256 MiB per key when keys are configured, no budget otherwise; 0 = none. Figure bytes over a key's sessions. */
  SESSIONBOX_KEY_MAX_FIGURE_BYTES: optionalInt(),
  /** Unset: 100 per key when keys are configured, no limit otherwise; 0 = none. Archives (files kept after a session ended) a key holds; the oldest go first. */
  SESSIONBOX_KEY_MAX_ARCHIVES: optionalInt(),
  /** Unset: 2 GiB per key when keys are configured, no budget otherwise; 0 = none. Bytes of a key's archives; the oldest go first. */
  SESSIONBOX_KEY_MAX_ARCHIVE_BYTES: optionalInt(),
  /** Unset: 32 per key when keys are configured, no limit otherwise; 0 = none. Requests of a key open at once on one API process (event streams, downloads, `?wait=true`, WebSockets). */
  SESSIONBOX_KEY_MAX_CONNECTIONS: optionalInt(),
  /** Ceilings of one session's limits (a create asking for more is refused with 400 naming the limit). */
  SESSIONBOX_MAX_MEMORY_MB: int(8192, 64, 65536),
  SESSIONBOX_MAX_DISK_MB: int(4096, 16, 16384),
  SESSIONBOX_MAX_CPUS: z.coerce.number().min(0.05).max(64).default(4),
  SESSIONBOX_MAX_PIDS: int(1024, 16, 4096),
  /** Memory of each Docker host (MiB); unset: what its engine reports (`docker info` MemTotal). */
  SESSIONBOX_HOST_MEMORY_MB: optionalInt(256),
  /** Engine memory caps of a host's live sessions may add up to this many times its memory. */
  SESSIONBOX_HOST_MEMORY_OVERCOMMIT: z.coerce.number().min(0.1).max(100).default(4),
});
export type Env = z.infer<typeof EnvSchema>;

/** A variable's default, for the places that show or apply it outside `loadConfig` (the admin CLI's options). */
export function envDefault<K extends keyof Env>(name: K): Env[K] {
  return EnvSchema.shape[name].parse(undefined) as Env[K];
}

/** Rules across settings: at least one host, and the worker's host among them. */
export function checkEnv(e: Env, ctx: z.RefinementCtx): void {
  if (e.SESSIONBOX_DOCKER_HOSTS.length === 0) {
    ctx.addIssue({ code: 'custom', path: ['SESSIONBOX_DOCKER_HOSTS'], message: 'names no host' });
    return;
  }
  const workerHost = e.SESSIONBOX_WORKER_HOST;
  if (workerHost !== undefined && !e.SESSIONBOX_DOCKER_HOSTS.some((h) => h.name === workerHost)) {
    ctx.addIssue({ code: 'custom', path: ['SESSIONBOX_WORKER_HOST'], message: `"${workerHost}" is not in SESSIONBOX_DOCKER_HOSTS` });
  }
}

/** The parsed environment as the services read it; API keys (list, file, admin key) are checked together here. */
function toConfig(e: Env, ctx: z.RefinementCtx) {
  let auth: ReturnType<typeof loadApiKeys>;
  try {
    auth = loadApiKeys({ list: e.SESSIONBOX_API_KEYS, file: e.SESSIONBOX_API_KEYS_FILE, adminKey: e.SESSIONBOX_ADMIN_KEY });
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: errMsg(err) });
    return z.NEVER;
  }
  const dockerHosts = e.SESSIONBOX_DOCKER_HOSTS.map((h) => ({ ...h, capacity: h.capacity ?? e.SESSIONBOX_HOST_CAPACITY }));
  const keyed = auth.keys.length > 0 || auth.adminKey !== null;
  return {
    port: e.SESSIONBOX_PORT,
    host: e.SESSIONBOX_HOST,
    publicUrl: e.SESSIONBOX_PUBLIC_URL,
    redisUrl: e.SESSIONBOX_REDIS_URL,
    namespace: e.SESSIONBOX_NAMESPACE,
    image: e.SESSIONBOX_IMAGE,
    runtime: e.SESSIONBOX_RUNTIME,
    dockerHosts,
    workerHost: e.SESSIONBOX_WORKER_HOST ?? dockerHosts[0].name,
    workerConcurrency: e.SESSIONBOX_WORKER_CONCURRENCY,
    defaultTtlSeconds: e.SESSIONBOX_DEFAULT_TTL_SECONDS,
    tombstoneSeconds: e.SESSIONBOX_TOMBSTONE_SECONDS,
    reaperIntervalMs: e.SESSIONBOX_REAPER_INTERVAL_MS,
    maxOutputBytes: e.SESSIONBOX_MAX_OUTPUT_BYTES,
    maxCodeBytes: e.SESSIONBOX_MAX_CODE_BYTES,
    maxTimeoutMs: e.SESSIONBOX_MAX_TIMEOUT_MS,
    /** A busy session past its TTL by more than the longest run plus a minute has lost its worker. */
    stuckBusyMs: e.SESSIONBOX_MAX_TIMEOUT_MS + 60_000,
    maxFigures: e.SESSIONBOX_MAX_FIGURES,
    maxFigurePixels: e.SESSIONBOX_MAX_FIGURE_PIXELS,
    maxFigureBytes: e.SESSIONBOX_MAX_FIGURE_BYTES,
    maxSessionFigureBytes: e.SESSIONBOX_MAX_SESSION_FIGURE_BYTES,
    poolSize: e.SESSIONBOX_POOL_SIZE,
    poolLazySize: e.SESSIONBOX_POOL_LAZY_SIZE,
    /** A warm container listed longer than this is replaced, never handed out. */
    poolMaxAgeSeconds: e.SESSIONBOX_POOL_MAX_AGE_SECONDS,
    poolMemoryMb: e.SESSIONBOX_POOL_MEMORY_MB,
    poolDemandWindowSeconds: e.SESSIONBOX_POOL_DEMAND_WINDOW_SECONDS,
    stalledIntervalMs: e.SESSIONBOX_STALLED_INTERVAL_MS,
    logLevel: e.SESSIONBOX_LOG_LEVEL,
    reconcileOnStart: e.SESSIONBOX_RECONCILE_ON_START,
    maxFileBytes: e.SESSIONBOX_MAX_FILE_BYTES,
    /** Cap on all files of one session; null = the session's diskMb, at most 500 MiB. */
    maxSessionFilesBytes: e.SESSIONBOX_MAX_SESSION_FILES_BYTES ?? null,
    archiveSeconds: e.SESSIONBOX_ARCHIVE_SECONDS,
    /** What a session does at its idle TTL unless its create request says (issue 17). */
    onIdle: e.SESSIONBOX_ON_IDLE,
    hibernateRetentionSeconds: e.SESSIONBOX_HIBERNATE_RETENTION_SECONDS,
    /** Cap on one session's saved state; null = its memory limit (never more than that). */
    hibernateMaxStateBytes: e.SESSIONBOX_HIBERNATE_MAX_STATE_BYTES ?? null,
    /** Whole-container checkpoints for hibernation under runsc (`auto`) or never (`off`). */
    hibernateCheckpoint: e.SESSIONBOX_HIBERNATE_CHECKPOINT,
    maxArchiveBytes: e.SESSIONBOX_MAX_ARCHIVE_BYTES,
    archiveDir: e.SESSIONBOX_ARCHIVE_DIR,
    /** How often the worker deletes archives past their time: a quarter of their life, within [reaper interval, 1 min]. */
    archiveSweepIntervalMs: Math.max(e.SESSIONBOX_REAPER_INTERVAL_MS, Math.min(60_000, e.SESSIONBOX_ARCHIVE_SECONDS * 250)),
    /** Max characters of the text an LLM tool call returns to the model. */
    toolTextBudget: e.SESSIONBOX_TOOL_TEXT_BUDGET,
    /** Containers and records younger than this are being born: cleanup leaves them alone. */
    reconcileGraceMs: e.SESSIONBOX_RECONCILE_GRACE_MS,
    /** The worker pings its engine this often; after `hostDownAfterFailures` misses in a row the host is down. */
    hostCheckIntervalMs: e.SESSIONBOX_HOST_CHECK_INTERVAL_MS,
    hostDownAfterFailures: e.SESSIONBOX_HOST_DOWN_AFTER_FAILURES,
    /** How long a closing API lets in-flight requests finish, and a closing worker its running jobs. */
    shutdownGraceMs: e.SESSIONBOX_SHUTDOWN_GRACE_MS,
    /** null: the worker serves no HTTP. */
    workerMetricsPort: e.SESSIONBOX_WORKER_METRICS_PORT ?? null,
    /** Tenants (`SESSIONBOX_API_KEYS` and `SESSIONBOX_API_KEYS_FILE`). */
    apiKeys: auth.keys,
    /** Sees and touches every session (`SESSIONBOX_ADMIN_KEY`). */
    adminKey: auth.adminKey,
    /** Per-key defaults (a key's own values win); null or 0 = no limit. */
    keyMaxSessions: e.SESSIONBOX_KEY_MAX_SESSIONS ?? (keyed ? 50 : null),
    keyExecutionsPerMinute: e.SESSIONBOX_KEY_EXECUTIONS_PER_MINUTE ?? (keyed ? 600 : null),
    /** dify-sandbox drop-in: a run's time limit, and whether `enable_network` is honoured. */
    difyTimeoutMs: e.SESSIONBOX_DIFY_TIMEOUT_MS,
    difyAllowNetwork: e.SESSIONBOX_DIFY_ALLOW_NETWORK,
    keyMaxRunningExecutions: e.SESSIONBOX_KEY_MAX_RUNNING_EXECUTIONS ?? (keyed ? 16 : null),
    keyMaxQueuedExecutions: e.SESSIONBOX_KEY_MAX_QUEUED_EXECUTIONS ?? (keyed ? 200 : null),
    keyMaxMemoryMb: e.SESSIONBOX_KEY_MAX_MEMORY_MB ?? (keyed ? 51200 : null),
    keyMaxCpus: e.SESSIONBOX_KEY_MAX_CPUS ?? (keyed ? 50 : null),
    keyMaxFigureBytes: e.SESSIONBOX_KEY_MAX_FIGURE_BYTES ?? (keyed ? 256 * 1024 * 1024 : null),
    keyMaxArchives: e.SESSIONBOX_KEY_MAX_ARCHIVES ?? (keyed ? 100 : null),
    keyMaxArchiveBytes: e.SESSIONBOX_KEY_MAX_ARCHIVE_BYTES ?? (keyed ? 2 * 1024 * 1024 * 1024 : null),
    keyMaxConnections: e.SESSIONBOX_KEY_MAX_CONNECTIONS ?? (keyed ? 32 : null),
    maxSessionLimits: { memoryMb: e.SESSIONBOX_MAX_MEMORY_MB, diskMb: e.SESSIONBOX_MAX_DISK_MB, cpus: e.SESSIONBOX_MAX_CPUS, pids: e.SESSIONBOX_MAX_PIDS },
    hostMemoryMb: e.SESSIONBOX_HOST_MEMORY_MB ?? null,
    hostMemoryOvercommit: e.SESSIONBOX_HOST_MEMORY_OVERCOMMIT,
  };
}

/** The environment, checked across fields and shaped for the services: its parsed type is `Config`. */
export const ConfigSchema = EnvSchema.superRefine(checkEnv).transform(toConfig);
export type Config = z.output<typeof ConfigSchema>;

/** Parsed once at start, never read ad hoc; a bad value throws a message naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = ConfigSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
