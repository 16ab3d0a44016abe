import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ContainerRuntime } from '../runtime/container-runtime';
import type { ExecutionJobData } from '../executions/execution-queue';
import type { ExecutionStore } from '../executions/execution-store';
import { Keys } from '../infra/keys';
import type { Metrics } from '../infra/metrics';
import { waitForRedis } from '../infra/redis';
import { Labels } from '../runtime/labels';
import type { SessionService } from '../sessions/session-service';
import { applyCleanup, type CleanupProgress, type CleanupSummary } from './cleanup-apply';
import { RECONCILE_KINDS, errMsg, type CleanupContext, type CleanupOptions, type CleanupPlan, type CleanupPlanOptions } from './cleanup-types';
import { killSession, type KillResult } from './cleanup-kill';
import { planCleanup } from './cleanup-plan';
import { SessionInventory } from './session-inventory';

/**
 * The one place that reclaims what crashes leave behind. It only ever touches containers carrying
 * this namespace's labels (found by label filter), leaves anything born within the grace period
 * alone, re-checks every action just before applying it, and treats "already gone" as success.
 * The steps live beside it: cleanup-plan (what to do), cleanup-leftovers (Redis data of gone
 * sessions), cleanup-apply (doing it) and cleanup-kill (ending sessions now).
 */
export class Cleanup implements CleanupContext {
  readonly keys: Keys;
  readonly inventory: SessionInventory;
  private readonly queues = new Map<string, Queue<ExecutionJobData>>();
  private ownConnection: Redis | null = null;

  constructor(readonly opts: CleanupOptions) {
    this.keys = new Keys(opts.namespace);
    this.inventory = new SessionInventory({
      redis: opts.redis,
      redisError: opts.redisError,
      store: opts.sessions.store,
      executions: opts.executions,
      runtimes: opts.sessions.opts.runtimes,
      namespace: opts.namespace,
    });
  }

  plan(input: CleanupPlanOptions): Promise<CleanupPlan> {
    return planCleanup(this, input);
  }

  /** Carries out a plan (re-checking each action first); containers before data. */
  apply(plan: CleanupPlan, onProgress?: (p: CleanupProgress) => void): Promise<CleanupSummary> {
    return applyCleanup(this, plan, onProgress);
  }

  /**
   * Ends sessions now: the session is terminated (container removed, record kept as a tombstone,
   * or deleted with all its data when `purge`), and any other container labelled with its id is removed.
   * Idempotent: a session already gone is not an error.
   */
  kill(id: string, opts: { reason?: string; purge?: boolean } = {}): Promise<KillResult> {
    return killSession(this, id, opts);
  }

  queue(host: string): Queue<ExecutionJobData> {
    let q = this.queues.get(host);
    if (!q) {
      const connection = this.opts.queueConnection ?? (this.ownConnection ??= this.opts.redis.duplicate());
      q = new Queue<ExecutionJobData>(this.keys.queueName(host), { connection, prefix: this.keys.queuePrefix(), skipMetasUpdate: true });
      this.queues.set(host, q);
    }
    return q;
  }

  async removeContainer(host: string, id: string) {
    const rt: ContainerRuntime = this.opts.sessions.runtime(host);
    const info = await rt.inspect(id);
    if (!info) return;
    if (info.labels[Labels.managed] !== 'true' || info.labels[Labels.namespace] !== this.opts.namespace) {
      throw new Error(`container ${id.slice(0, 12)} does not carry namespace ${this.opts.namespace}'s labels; left alone`);
    }
    await rt.remove(id);
  }

  async close() {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.queues.clear();
    await this.ownConnection?.quit().catch(() => this.ownConnection?.disconnect());
    this.ownConnection = null;
  }
}

/**
 * The reconcile pass a worker runs when it starts: one cleanup (never `all`) of its own host,
 * so a restart after a crash heals what the crash left. Never throws; logs its summary.
 */
export async function reconcileOnStart(p: {
  sessions: SessionService;
  executions: ExecutionStore;
  redis: Redis;
  namespace: string;
  host: string;
  graceMs: number;
  stuckBusyMs: number;
  logger: Logger;
  metrics?: Metrics;
}): Promise<CleanupSummary | null> {
  const cleanup = new Cleanup({ ...p });
  try {
    await waitForRedis(p.redis, 15_000);
    const plan = await cleanup.plan({ hosts: [p.host], graceMs: p.graceMs, kinds: RECONCILE_KINDS, stuckBusyMs: p.stuckBusyMs });
    for (const w of plan.warnings) p.logger.warn({ host: p.host }, `reconcile: ${w}`);
    const summary = await cleanup.apply(plan);
    const counts = Object.fromEntries(RECONCILE_KINDS.map((k) => [k, summary.kinds[k]]));
    p.logger.info({ host: p.host, ...counts, durationMs: summary.durationMs }, 'reconcile pass done');
    return summary;
  } catch (err) {
    p.logger.warn({ host: p.host, err: errMsg(err) }, 'reconcile pass failed');
    return null;
  } finally {
    await cleanup.close().catch(() => undefined);
  }
}
