import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Counter, Histogram } from 'prom-client';
import { errMsg } from '../infra/err-msg';
import { Keys } from '../infra/keys';
import type { Metrics } from '../infra/metrics';
import type { ContainerRuntime } from '../runtime/container-runtime';
import { engineMemoryMb } from '../runtime/docker-runtime';
import type { SessionService } from '../sessions/session-service';
import type { SessionRecord } from '../sessions/session-store';
import { sharedCounter, sharedHistogram } from './file-metrics';
import type { FileOpsClient } from './fileops-client';
import type { SessionArchives } from './session-archives';

/** How a session hibernates: the whole container (engine checkpoint), or its namespace (dill) in a new container. */
export type HibernationMethod = 'checkpoint' | 'dill';

/**
 * The choice, pure: a checkpoint only when the operator allows it (`SESSIONBOX_HIBERNATE_CHECKPOINT`), under gVisor (runc's CRIU fails on the kernels we run on),
 * only when the engine allows it (Docker's `experimental`), and only for a container that was
 * never started from a checkpoint: Docker 20.10 with runsc cannot checkpoint a restored container
 * cleanly (containerd keeps its task and shim, and the next restore fails with "id already in
 * use"). Everything else takes the dill path.
 */
export function hibernationMethod(p: {
  setting: 'auto' | 'off';
  ociRuntime: string | undefined;
  engineCheckpoints: boolean;
  restoredBefore: boolean;
}): HibernationMethod {
  return p.setting === 'auto' && p.ociRuntime === 'runsc' && p.engineCheckpoints && !p.restoredBefore ? 'checkpoint' : 'dill';
}

/** Field of the session's record: the id of its container once that was started from a checkpoint. */
const RESTORED_FIELD = 'checkpointRestored';

export interface SessionCheckpointOptions {
  sessions: SessionService;
  archives: SessionArchives;
  fileops: FileOpsClient;
  redis: Redis;
  namespace: string;
  setting: 'auto' | 'off';
  /** The dill state file (in /work) that the archive already holds: left out of the checkpoint. */
  statePath: string;
  logger: Logger;
  metrics?: Metrics;
}

/** What a wake should do after looking for a checkpoint: the session is live, or the dill path runs (with these notes first). */
export type CheckpointWake = { live: SessionRecord } | { notes: string[] };

/**
 * Exact state under gVisor (issue 17). A session is hibernated by `SessionHibernation`, which first
 * saves its namespace (dill) and archives its files as on runc. Then, instead of removing the
 * container, this checkpoints it when it can: the container stays, stopped (no RAM), holding its
 * processes, memory and tmpfs /work on the engine's disk, and its labels keep it ours. A wake
 * starts it from the checkpoint on the same host, so open sockets, generators and threads come
 * back too. Whenever that is not possible (no checkpoint, restore failed, its host gone or full)
 * the container goes and the wake takes the dill path from the archive, on any host.
 */
export class SessionCheckpoint {
  private readonly events: Counter<'event'>;
  private readonly wakeSeconds: Histogram<string>;
  private readonly keys: Keys;

  constructor(readonly opts: SessionCheckpointOptions) {
    this.keys = new Keys(opts.namespace);
    this.events = sharedCounter(opts.metrics?.registry, 'sessionbox_hibernation_total', 'Hibernations and wakes', ['event']);
    this.wakeSeconds = sharedHistogram(opts.metrics?.registry, 'sessionbox_wake_seconds', 'Time to wake a hibernated session (container, files, state)');
  }

  private async method(rt: ContainerRuntime, rec: SessionRecord): Promise<HibernationMethod> {
    if (this.opts.setting === 'off') return 'dill';
    const [info, engineCheckpoints, restored] = await Promise.all([
      rt.inspect(rec.containerId),
      rt.checkpointsSupported().catch(() => false),
      this.opts.redis.hget(this.keys.session(rec.id), RESTORED_FIELD),
    ]);
    return hibernationMethod({ setting: this.opts.setting, ociRuntime: info?.ociRuntime, engineCheckpoints, restoredBefore: restored === rec.containerId });
  }

  /**
   * The last step of a hibernation, once state and files are archived: checkpoints the container
   * when it can, else (or when the checkpoint fails) removes it. Returns what it did.
   */
  async hibernate(rec: SessionRecord): Promise<HibernationMethod> {
    const rt = this.opts.sessions.runtime(rec.host);
    if ((await this.method(rt, rec)) === 'checkpoint') {
      const started = Date.now();
      try {
        // The archive holds it; a restored session must not find it in its files.
        const path = this.opts.statePath.slice('/work/'.length);
        await this.opts.fileops.run(rec, { op: 'file_delete', path }, { path });
        await rt.checkpoint(rec.containerId);
        this.events.inc({ event: 'checkpointed' });
        this.opts.logger.info({ sessionId: rec.id, containerId: rec.containerId, ms: Date.now() - started }, 'session container checkpointed');
        return 'checkpoint';
      } catch (err) {
        this.events.inc({ event: 'checkpoint_failed' });
        this.opts.logger.warn({ sessionId: rec.id, containerId: rec.containerId, err: errMsg(err) }, 'could not checkpoint the session container; it hibernates by its saved namespace');
      }
    }
    await rt.remove(rec.containerId);
    return 'dill';
  }

  /**
   * The first step of a wake: starts a checkpointed container again, in place. When that cannot
   * be done, its container (if any) is removed so that the dill wake can make a new one.
   */
  async wake(rec: SessionRecord): Promise<CheckpointWake> {
    const started = process.hrtime.bigint();
    let rt: ContainerRuntime;
    try {
      rt = this.opts.sessions.runtime(rec.host);
    } catch {
      return { notes: [] }; // its host is no longer configured: the archive wakes it elsewhere
    }
    const info = await rt.inspect(rec.containerId).catch(() => null);
    // Its label may name another id (a warm-pool container it was woken into before); the record's containerId is what makes it its.
    if (!info) return { notes: [] };
    const fallBack = async (why: string | null): Promise<CheckpointWake> => {
      await rt.remove(rec.containerId).catch(() => undefined);
      if (why === null) return { notes: [] };
      this.events.inc({ event: 'restore_failed' });
      this.opts.logger.warn({ sessionId: rec.id, containerId: rec.containerId, why }, 'checkpoint not restored; waking from the saved namespace');
      return { notes: [`the session's checkpoint could not be restored (${why}); its saved variables and files were loaded instead`] };
    };
    if (info.running || !(await rt.hasCheckpoint(rec.containerId).catch(() => false))) return fallBack(null);
    // Live again, it holds a slot of its key like a create (over the cap: the same 429, and it stays hibernated).
    const limits = this.opts.sessions.opts.limits;
    const slot = limits ? await limits.reserveSession({ owner: rec.owner }, rec.limits) : null;
    const budget = this.opts.sessions.opts.hostBudget;
    const reservation = budget ? await budget.reserve(rec.host, engineMemoryMb(rec.limits)) : null;
    if (budget && !reservation) {
      await slot?.release();
      return fallBack(`host ${rec.host} has no memory left for it`);
    }
    const now = Date.now();
    try {
      // Marked first: a container that may have been restored is never checkpointed again.
      await this.opts.redis.hset(this.keys.session(rec.id), RESTORED_FIELD, rec.containerId);
      await rt.restoreCheckpoint(rec.containerId);
      await this.opts.sessions.store.wake(rec, rec.host, rec.containerId, [], now);
    } catch (err) {
      await Promise.all([reservation?.release(), slot?.release()]);
      return fallBack(errMsg(err));
    }
    await Promise.all([reservation?.commit(rec.id), slot?.commit(rec.id)]);
    // Live again: the next hibernation writes new ones; these would only take disk until wakeUntil.
    await rt.deleteCheckpoint(rec.containerId).catch((err) => this.opts.logger.warn({ sessionId: rec.id, err: errMsg(err) }, 'could not delete the checkpoint of a woken session'));
    await this.opts.archives.drop(rec.id).catch((err) => this.opts.logger.warn({ sessionId: rec.id, err: errMsg(err) }, 'could not delete the archive of a woken session'));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.events.inc({ event: 'woken' });
    this.events.inc({ event: 'woken_checkpoint' });
    this.wakeSeconds.observe(seconds);
    this.opts.logger.info({ sessionId: rec.id, host: rec.host, containerId: rec.containerId, seconds }, 'session restored from its checkpoint');
    return {
      live: { ...rec, status: 'ready', hibernatedAt: null, wakeUntil: null, lastActiveAt: now, expiresAt: now + rec.ttlSeconds * 1000 },
    };
  }
}
