import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { ContainerRuntime } from '../runtime/container-runtime';
import { deathReason } from '../runtime/death-reason';
import { Labels, namespaceFilter } from '../runtime/labels';
import { disabledMetrics, type Metrics } from '../infra/metrics';
import { errMsg } from '../infra/err-msg';
import { TimerLoop } from '../infra/timer-loop';
import { withTimeout } from '../infra/timers';
import type { SessionService } from '../sessions/session-service';
import type { SessionRecord } from '../sessions/session-store';

export interface ReaperOptions {
  sessions: SessionService;
  host: string;
  namespace: string;
  intervalMs: number;
  logger: Logger;
  metrics?: Metrics;
  /** How long after a container dies before its session is declared dead (lets a DELETE finish first). */
  deathGraceMs?: number;
}

/**
 * Where the TTL kills: every `intervalMs`, sessions of this host idle past their TTL lose their
 * container and become tombstones. It also listens to the engine so a container that dies or is
 * removed from outside ends its session at once instead of on the next call.
 */
export class Reaper {
  private readonly loop: TimerLoop;
  private readonly metrics: Metrics;
  private stopWatch: (() => void) | null = null;
  /** The subscription under way: a stop() during it must still end the stream it yields. */
  private watching: Promise<void> | null = null;
  private rewatch: NodeJS.Timeout | null = null;
  private stopped = false;
  /** The event stream broke (engine restarted or unreachable): deaths in between went unreported. */
  private watchLost = false;
  private checking: Promise<void> | null = null;
  /** Expired sessions being ended (their archive may take up to its timeout), by id. */
  private readonly ending = new Map<string, Promise<boolean>>();

  constructor(readonly opts: ReaperOptions) {
    this.metrics = opts.metrics ?? disabledMetrics();
    this.loop = new TimerLoop({ name: 'reaper sweep', run: () => this.sweep(), intervalMs: opts.intervalMs, logger: opts.logger });
  }

  private get runtime(): ContainerRuntime {
    return this.opts.sessions.runtime(this.opts.host);
  }

  start() {
    this.stopped = false;
    this.loop.start();
    this.watching = this.watch();
  }

  private retryWatch() {
    this.watchLost = true;
    if (!this.stopped) this.rewatch = setTimeout(() => (this.watching = this.watch()), 2000);
  }

  private async watch() {
    this.rewatch = null;
    if (this.stopped) return;
    try {
      const stopWatch = await this.runtime.watch(
        namespaceFilter(this.opts.namespace),
        (e) => {
          if (e.action !== 'die' && e.action !== 'destroy') return;
          const sessionId = e.labels[Labels.sessionId];
          if (sessionId) setTimeout(() => void this.onContainerDeath(sessionId, e.id), this.opts.deathGraceMs ?? 1000);
        },
        () => {
          this.stopWatch = null;
          this.retryWatch();
        },
      );
      if (this.stopped) return stopWatch();
      this.stopWatch = stopWatch;
      if (this.watchLost) {
        this.watchLost = false;
        this.checking = this.checkLive();
      }
    } catch {
      this.retryWatch();
    }
  }

  /** Looks at every live session of this host, as the events that would have told were missed. */
  private async checkLive() {
    try {
      const ids = await this.opts.sessions.store.liveIds(this.opts.host);
      for (const id of ids) {
        if (this.stopped) return;
        const rec = await this.opts.sessions.store.get(id);
        if (rec && rec.status !== 'terminated') await this.onContainerDeath(id, rec.containerId);
      }
    } catch (err) {
      this.opts.logger.warn({ err: errMsg(err) }, 'could not check sessions after the engine came back');
      this.watchLost = true;
    }
  }

  /** `labelId`: the container's session-id label (a woken session's warm-pool container names another id, mapped back by its alias). */
  private async onContainerDeath(labelId: string, containerId: string) {
    if (this.stopped) return; // a death seen just before stop(): the next worker's reconcile settles it
    let sessionId = labelId;
    try {
      sessionId = await this.opts.sessions.store.sessionForLabel(labelId);
      const rec = await this.opts.sessions.store.get(sessionId);
      if (!rec || rec.status === 'terminated' || rec.status === 'hibernated' || rec.containerId !== containerId) return;
      const info = await this.runtime.inspect(containerId);
      if (info?.running) return;
      // Checkpointed by its hibernation under gVisor (which stops it): that settles the record, not a death.
      if (info && (await this.runtime.hasCheckpoint(containerId))) return;
      if (await this.opts.sessions.terminate(rec, deathReason(info))) this.metrics.reaperActions.inc({ action: 'dead_container' });
    } catch (err) {
      this.opts.logger.warn({ sessionId, host: this.opts.host, containerId, err: errMsg(err) }, 'could not settle a dead container');
    }
  }

  /**
   * One pass: claims every session of this host past its TTL and ends each on its own, so one whose
   * end is slow (an archive that hangs until its timeout) never holds up another's. Resolves once
   * this pass's sessions are ended; returns how many it reaped.
   */
  async sweep(now = Date.now()): Promise<number> {
    const { sessions, host } = this.opts;
    const ids = await sessions.store.expiredIds(now);
    const ends: Promise<boolean>[] = [];
    for (const id of ids) {
      if (this.ending.has(id)) continue;
      const rec = await sessions.store.get(id);
      if (rec && rec.host !== host) continue;
      if (!(await sessions.store.claimExpired(id, now)) || !rec) continue;
      const end = this.expire(rec, now).finally(() => this.ending.delete(id));
      this.ending.set(id, end);
      ends.push(end);
    }
    // The next pass does not wait for slow ends (they are in `ending`), only for this pass's quick ones.
    const settled = await Promise.all(ends.map((e) => Promise.race([e, sleep(this.opts.intervalMs).then(() => false)])));
    return settled.filter(Boolean).length;
  }

  private async expire(rec: SessionRecord, now: number): Promise<boolean> {
    const { sessions, host, logger } = this.opts;
    try {
      const action = await sessions.idleOut(rec);
      this.metrics.reaperActions.inc({ action });
      return true;
    } catch (err) {
      logger.error({ sessionId: rec.id, host, containerId: rec.containerId, err: errMsg(err) }, 'could not reap an expired session; will retry');
      // Back in the expiry index at its recorded expiry (already past), so the next pass claims it
      // again: a live session and a hibernated one past its wakeUntil alike.
      await sessions.store.requeueExpiry(rec.id).catch(() => undefined);
      return false;
    }
  }

  async stop() {
    this.stopped = true;
    if (this.rewatch) clearTimeout(this.rewatch);
    this.stopWatch?.();
    // A hung engine must not hold the shutdown: the subscription gets a few seconds to settle.
    await withTimeout(this.watching ?? Promise.resolve(), 5000, 'event subscription').catch(() => undefined);
    await this.loop.stop();
    await this.checking;
    await Promise.all(this.ending.values());
  }
}
