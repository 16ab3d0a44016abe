import { z } from 'zod';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ExecutionJobData } from '../executions/execution-queue';
import type { ExecutionStore } from '../executions/execution-store';
import type { Keys } from '../infra/keys';
import type { Metrics } from '../infra/metrics';
import type { SessionService } from '../sessions/session-service';
import type { SessionInventory } from './session-inventory';

/**
 * What a cleanup pass can find:
 * - `expired`: live sessions past their idle TTL that no reaper ended (busy ones only once stuck);
 * - `orphan_container`: labelled containers no live record points at (and not listed in the warm pool);
 * - `dead_record`: live records whose container is missing or stopped;
 * - `leftover_data`: Redis data of sessions that are gone (execution records, event logs, figures,
 *   seq/exec lists, index entries, queued or failed jobs), and figures/index entries of tombstones;
 * - `all`: with `all: true`, every container of the namespace, whatever its state.
 */
export const CLEANUP_KINDS = ['expired', 'orphan_container', 'dead_record', 'leftover_data', 'all'] as const;
export type CleanupKind = (typeof CLEANUP_KINDS)[number];
export const RECONCILE_KINDS: CleanupKind[] = ['expired', 'orphan_container', 'dead_record', 'leftover_data'];

export const CleanupPlanOptions = z
  .object({
    /** Docker hosts whose containers and records the pass covers (default: every configured host). */
    hosts: z.array(z.string()).min(1).optional(),
    /** Containers and records younger than this are being born and are left alone (config: reconcileGraceMs). */
    graceMs: z.number().int().min(0),
    /** Only act on what has shown no sign of life for this long. */
    olderThanMs: z.number().int().min(0).optional(),
    /** Every container of the namespace (kind `all`), live or not. */
    all: z.boolean().default(false),
    kinds: z.array(z.enum(CLEANUP_KINDS)).optional(),
    /** A busy session past its TTL by more than this has lost its worker: reap it anyway (unset: never). */
    stuckBusyMs: z.number().int().min(0).optional(),
  })
  .strict();
export type CleanupPlanOptions = z.input<typeof CleanupPlanOptions>;

export interface CleanupAction {
  kind: CleanupKind;
  sessionId: string | null;
  host: string | null;
  containerId: string | null;
  /** Why it is on the list, for people. */
  reason: string;
  /** The container carries `sessionbox.pool=true`. */
  pooled?: boolean;
  /** expired: busy far past its TTL (its worker is gone). */
  stuck?: boolean;
  /** Its warm-pool list entry, removed along with the container (`all` only). */
  poolEntry?: { key: string; raw: string };
  /** leftover_data: whether the session was gone or a tombstone when planned. */
  sessionState?: 'gone' | 'terminated';
  keys?: string[];
  index?: { key: string; member: string; type: 'zset' | 'set' }[];
  jobs?: { host: string; jobId: string }[];
}

export interface CleanupPlan {
  namespace: string;
  hosts: string[];
  plannedAt: number;
  all: boolean;
  actions: CleanupAction[];
  /** Things the pass could not judge (e.g. an engine down), for people. */
  warnings: string[];
  /** Hosts whose engine could not list its containers (also among the warnings): nothing there was judged. */
  unlistedHosts: { host: string; error: string }[];
  /** Set when Redis could not be read: then only `all` can act. */
  recordsError: string | null;
}

export interface CleanupOptions {
  sessions: SessionService;
  executions: ExecutionStore;
  redis: Redis;
  /** Why Redis cannot be used; then only containers are listed and `all` removes them by label. */
  redisError?: string | null;
  namespace: string;
  logger: Logger;
  metrics?: Metrics;
  /** Connection for the queues searched for jobs of gone sessions (default: a duplicate of `redis`, closed by `close()`). */
  queueConnection?: Redis;
  concurrency?: number;
}

/** What the plan, leftovers, apply and kill steps share (the `Cleanup` object). */
export interface CleanupContext {
  readonly opts: CleanupOptions;
  readonly keys: Keys;
  readonly inventory: SessionInventory;
  /** The host's execution queue, opened without writing its meta key (a dry run changes nothing). */
  queue(host: string): Queue<ExecutionJobData>;
  /** Removes a container only after checking, on the engine, that it carries this namespace's labels. */
  removeContainer(host: string, id: string): Promise<void>;
}

export { errMsg } from '../infra/err-msg';
