import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Counter, Histogram } from 'prom-client';
import { SessionboxError, UnavailableError } from '../errors/errors';
import { Keys } from '../infra/keys';
import type { Metrics } from '../infra/metrics';
import { KernelChannel, type KernelEvent } from '../runtime/kernel-channel';
import type { SessionService } from '../sessions/session-service';
import type { SessionRecord } from '../sessions/session-store';
import { sharedCounter, sharedHistogram } from './file-metrics';
import type { FileOpsClient } from './fileops-client';
import { SessionCheckpoint } from './session-checkpoint';
import type { SessionArchives } from './session-archives';

/** Where the kernel writes the saved namespace; it travels in the files archive and is removed on wake. */
export const STATE_PATH = '/work/.sessionbox-state.dill';
const STATE_TIMEOUT_MS = 120_000;
const WAKE_LOCK_MS = 180_000;
/** Archives up to this size travel inside the wake op (base64, well under the runner's 64 MiB request line). */
const INLINE_ARCHIVE_BYTES = 16 * 1024 * 1024;

export interface SessionHibernationOptions {
  sessions: SessionService;
  archives: SessionArchives;
  fileops: FileOpsClient;
  redis: Redis;
  namespace: string;
  retentionSeconds: number;
  /** Operator cap on one session's saved state; null = its memory limit (the smaller wins). */
  maxStateBytes: number | null;
  /** Under runsc: checkpoint the whole container when the engine allows it (session-checkpoint.ts), or never. */
  checkpoints: 'auto' | 'off';
  logger: Logger;
  metrics?: Metrics;
}

/** What the kernel's `state.py` reports. */
interface DumpSummary {
  saved: string[];
  modules: string[];
  skipped: { name: string; why: string }[];
  bytes: number;
  overCap: boolean;
}
interface LoadSummary {
  restored: string[];
  notes: string[];
  /** Files the kernel unpacked from an archive sent with the op (absent: it unpacked none). */
  extracted?: number;
}

/**
 * Sessions that outlive idleness (issue 17), on runc: at the idle TTL the kernel pickles the user's
 * namespace (dill) into the working directory, the directory is archived like an expired
 * session's files, and the container goes. The next use makes a container with the same id,
 * extracts the archive and loads the namespace back.
 */
export class SessionHibernation {
  private readonly keys: Keys;
  private readonly events: Counter<'event'>;
  private readonly objects: Counter<'outcome'>;
  private readonly wakeSeconds: Histogram<string>;
  private readonly waking = new Map<string, Promise<SessionRecord>>();
  /** Under gVisor: the whole container is checkpointed as well, and woken from that when it can be. */
  private readonly checkpoint: SessionCheckpoint;

  constructor(readonly opts: SessionHibernationOptions) {
    this.keys = new Keys(opts.namespace);
    this.events = sharedCounter(opts.metrics?.registry, 'sessionbox_hibernation_total', 'Hibernations and wakes', ['event']);
    this.objects = sharedCounter(opts.metrics?.registry, 'sessionbox_hibernated_objects_total', 'Names saved or not at hibernation', ['outcome']);
    this.wakeSeconds = sharedHistogram(opts.metrics?.registry, 'sessionbox_wake_seconds', 'Time to wake a hibernated session (container, files, state)');
    this.checkpoint = new SessionCheckpoint({ ...opts, setting: opts.checkpoints, statePath: STATE_PATH });
  }

  private async kernelOp<T>(rec: SessionRecord, op: 'hibernate' | 'wake', extra: Record<string, unknown> = {}): Promise<T> {
    const channel = new KernelChannel(await this.opts.sessions.runtime(rec.host).attach(rec.containerId));
    try {
      const done = await channel.request<KernelEvent>(
        { id: randomUUID(), op, path: STATE_PATH, timeoutMs: STATE_TIMEOUT_MS, ...extra },
        { isLast: (e) => e.ev === 'done' || e.ev === 'error', timeoutMs: STATE_TIMEOUT_MS + 10_000 },
      );
      if (done.ev === 'error' || done.status !== 'succeeded' || typeof done.result !== 'string') {
        const err = done.error as { name?: string; value?: string } | null;
        throw new Error(`${op} failed in the session: ${err ? `${err.name}: ${err.value}` : String(done.message ?? done.cause ?? 'no result')}`);
      }
      return JSON.parse(done.result) as T;
    } finally {
      channel.close();
    }
  }

  /** The session's memory limit, or the operator's cap when that is smaller. */
  stateCap(rec: Pick<SessionRecord, 'limits'>): number {
    const memory = rec.limits.memoryMb * 1024 * 1024;
    return this.opts.maxStateBytes === null ? memory : Math.min(memory, this.opts.maxStateBytes);
  }

  /** For the reaper (via `SessionService.idleOut`): saves state and files, then removes the container. */
  async hibernate(rec: SessionRecord): Promise<boolean> {
    const started = Date.now();
    const maxBytes = this.stateCap(rec);
    const summary = await this.kernelOp<DumpSummary>(rec, 'hibernate', { maxBytes });
    const wakeUntil = started + this.opts.retentionSeconds * 1000;
    const info = await this.opts.archives.archive(rec, 'expired', { until: wakeUntil, extraBytes: summary.bytes });
    // Used while it was being saved (a run or a file operation touched it): it stays live, the saved copy goes.
    const current = await this.opts.sessions.store.get(rec.id);
    if (!current || current.status === 'terminated' || current.lastActiveAt !== rec.lastActiveAt) {
      await this.opts.archives.drop(rec.id);
      const path = STATE_PATH.slice('/work/'.length);
      await this.opts.fileops.run(rec, { op: 'file_delete', path }, { path }).catch(() => undefined);
      this.events.inc({ event: 'cancelled' });
      this.opts.logger.info({ sessionId: rec.id }, 'hibernation cancelled: the session was used while it was being saved');
      return false;
    }
    // The container goes (or, checkpointed, stops) first, so a session that reads as hibernated runs nothing.
    const method = await this.checkpoint.hibernate(rec);
    await this.opts.sessions.store.hibernate(rec, Date.now(), wakeUntil);
    // A hibernated session holds no live-session slot of its key; waking takes one again.
    // Best effort: a slot left behind is dropped by the key's next prune (it skips hibernated sessions).
    await this.opts.sessions.opts.limits
      ?.releaseSession(rec.owner, rec.id)
      .catch((err) => this.opts.logger.warn({ sessionId: rec.id, err: String(err) }, 'could not release the key slot of a hibernated session'));
    this.events.inc({ event: 'hibernated' });
    this.objects.inc({ outcome: 'saved' }, summary.saved.length + summary.modules.length);
    this.objects.inc({ outcome: 'unsaved' }, summary.skipped.length);
    this.opts.logger.info(
      { sessionId: rec.id, method, stateBytes: summary.bytes, stateCap: maxBytes, overCap: summary.overCap, archiveBytes: info.size, saved: summary.saved.length, skipped: summary.skipped.map((s) => s.name) },
      'session hibernated',
    );
    return true;
  }

  /** For `SessionService.getLive`: one wake per session at a time, across processes. */
  wake(rec: SessionRecord): Promise<SessionRecord> {
    const existing = this.waking.get(rec.id);
    if (existing) return existing;
    const p = this.wakeOnce(rec).finally(() => this.waking.delete(rec.id));
    this.waking.set(rec.id, p);
    return p;
  }

  private async wakeOnce(rec: SessionRecord): Promise<SessionRecord> {
    const lock = this.keys.archive(rec.id) + ':waking';
    if ((await this.opts.redis.set(lock, '1', 'PX', WAKE_LOCK_MS, 'NX')) !== 'OK') return this.waitForWake(rec.id);
    try {
      return await this.wakeLocked(rec);
    } finally {
      await this.opts.redis.del(lock).catch(() => undefined);
    }
  }

  private async waitForWake(id: string): Promise<SessionRecord> {
    const until = Date.now() + WAKE_LOCK_MS;
    while (Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      const rec = await this.opts.sessions.store.get(id);
      if (rec && rec.status !== 'hibernated') return rec;
    }
    throw new UnavailableError('wake_timeout', `session ${id} is still waking; try again`);
  }

  private async wakeLocked(rec: SessionRecord): Promise<SessionRecord> {
    const started = process.hrtime.bigint();
    const ms = () => Math.round(Number(process.hrtime.bigint() - started) / 1e6);
    const viaCheckpoint = await this.checkpoint.wake(rec);
    if ('live' in viaCheckpoint) return viaCheckpoint.live;
    const info = await this.opts.archives.archiveInfo(rec.id);
    if (!info) throw new SessionboxError('hibernation_lost', `the saved state of session ${rec.id} is gone`, 410);
    // The archive is read while the container is found (a warm-pool one, or made cold).
    const [read, placed] = await Promise.allSettled([this.opts.archives.archiveBytes(info), this.opts.sessions.wakeContainer(rec, WAKE_LOCK_MS)]);
    if (placed.status === 'rejected') throw placed.reason;
    const target = placed.value;
    const { host, containerId } = target;
    const live: SessionRecord = { ...rec, host, containerId, containerLabel: target.containerLabel, status: 'ready' };
    const phases: Record<string, number> = { container: ms() };
    let summary: LoadSummary;
    try {
      if (read.status === 'rejected') throw read.reason;
      const data = read.value;
      // A small archive goes to the kernel with the wake op, which unpacks it itself: no `docker exec` (150-300 ms here).
      const inline = data.length <= INLINE_ARCHIVE_BYTES ? await this.kernelOp<LoadSummary>(live, 'wake', { archive: data.toString('base64') }) : null;
      if (inline && inline.extracted !== undefined) {
        summary = inline;
      } else {
        // Too big to send inline, or an image whose kernel does not unpack (it then found no state and changed nothing).
        const maxBytes = Math.max(this.opts.archives.opts.maxArchiveBytes, data.length);
        await this.opts.fileops.run(live, { op: 'extract', size: data.length, maxBytes }, { data });
        phases.extract = ms();
        summary = await this.kernelOp<LoadSummary>(live, 'wake');
      }
      phases.load = ms();
    } catch (err) {
      await target.abandon();
      this.events.inc({ event: 'wake_failed' });
      throw err;
    }
    const now = Date.now();
    await this.opts.sessions.store.wake(rec, host, containerId, [...viaCheckpoint.notes, ...summary.notes], now, target.containerLabel);
    await Promise.all([
      target.commit(),
      // Live again: the next hibernation writes a new archive; this one would only sit on disk until wakeUntil.
      this.opts.archives.drop(rec.id).catch((err) => this.opts.logger.warn({ sessionId: rec.id, err: String(err) }, 'could not delete the archive of a woken session')),
    ]);
    this.events.inc({ event: 'woken' });
    this.objects.inc({ outcome: 'restored' }, summary.restored.length);
    this.objects.inc({ outcome: 'unrestored' }, summary.notes.length);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.wakeSeconds.observe(seconds);
    this.opts.logger.info(
      { sessionId: rec.id, host, containerId, warm: !!target.containerLabel, seconds, phasesMs: { ...phases, done: ms() }, notes: summary.notes },
      'session woke from hibernation',
    );
    return { ...live, hibernatedAt: null, wakeUntil: null, lastActiveAt: now, expiresAt: now + rec.ttlSeconds * 1000 };
  }
}
