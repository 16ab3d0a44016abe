import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Cleanup } from './cleanup';
import type { ExecutionStore } from '../executions/execution-store';
import { disabledMetrics, type Metrics } from '../infra/metrics';
import { errMsg } from '../infra/err-msg';
import { TimerLoop } from '../infra/timer-loop';
import type { SessionService } from '../sessions/session-service';
import { withTimeout } from '../infra/timers';

export type HostState = 'unknown' | 'up' | 'down';

export interface HostMonitorOptions {
  sessions: SessionService;
  executions: ExecutionStore;
  redis: Redis;
  namespace: string;
  /** The Docker host this monitor watches (a worker watches its own). */
  host: string;
  intervalMs: number;
  /** Consecutive failed pings before the host is declared down. */
  failuresBeforeDown: number;
  /** A hung engine counts as a failed ping after this long (default: the interval, at least 1 s). */
  pingTimeoutMs?: number;
  /** Containers younger than this are being born: the leftover pass leaves them alone. */
  graceMs: number;
  logger: Logger;
  metrics?: Metrics;
}

/**
 * Watches one Docker engine. After `failuresBeforeDown` failed pings in a row the host is marked
 * down in Redis (the API then places no session there) and its live sessions become tombstones
 * with reason `host_down`: their containers cannot be removed while the engine is away. While the
 * host stays down, every tick sweeps again (a session recorded during the race is caught too).
 * When the engine answers again, the containers of terminated sessions are removed, then the flag
 * is cleared. Every step is idempotent, so several workers of one host may run a monitor each.
 */
export class HostMonitor {
  private readonly loop: TimerLoop;
  private readonly metrics: Metrics;
  private failures = 0;
  private current: HostState = 'unknown';
  /** When to look once more for leftovers that were still inside the grace at recovery. */
  private followUpAt: number | null = null;

  constructor(readonly opts: HostMonitorOptions) {
    this.metrics = opts.metrics ?? disabledMetrics();
    this.loop = new TimerLoop({
      name: 'host check',
      run: () => this.check(),
      intervalMs: opts.intervalMs,
      logger: opts.logger,
      onError: (err) => opts.logger.warn({ host: opts.host, err: errMsg(err) }, 'host check failed'),
    });
  }

  get state(): HostState {
    return this.current;
  }

  start() {
    this.loop.start();
  }

  async stop() {
    await this.loop.stop();
  }

  /** One probe and whatever it calls for; returns the state afterwards. */
  async check(): Promise<HostState> {
    const { host, logger } = this.opts;
    const timeoutMs = this.opts.pingTimeoutMs ?? Math.max(1000, this.opts.intervalMs);
    let pingError: string | null = null;
    const abort = new AbortController();
    try {
      await withTimeout(this.opts.sessions.runtime(host).ping({ signal: abort.signal }), timeoutMs, 'engine ping');
    } catch (err) {
      pingError = errMsg(err);
    } finally {
      abort.abort();
    }

    if (pingError === null) {
      if (this.failures > 0 || this.current !== 'up') {
        // A flag left by an earlier run (or another worker of this host) is cleared here too.
        // Redis errors propagate: the state stays as it is until a pass gets through.
        const down = this.current === 'down' || (await this.opts.sessions.store.isHostDown(host));
        if (down || this.failures > 0) await this.recover(down);
        if (this.current !== 'up') logger.info({ host }, down ? 'Docker host is back' : 'Docker host answers');
      } else if (this.followUpAt !== null && Date.now() >= this.followUpAt) {
        await this.recover(false, true);
      }
      this.failures = 0;
      this.current = 'up';
      return this.current;
    }

    this.failures++;
    logger.warn({ host, failures: this.failures, err: pingError }, 'Docker engine did not answer');
    if (this.failures >= this.opts.failuresBeforeDown) {
      if (this.current !== 'down') logger.error({ host, failures: this.failures }, 'Docker host declared down');
      this.current = 'down';
      await this.markDown();
    }
    return this.current;
  }

  /** Flags the host and turns its live sessions into `host_down` tombstones. */
  private async markDown() {
    const { sessions, executions, host, logger } = this.opts;
    const metrics = this.metrics;
    if (!(await sessions.store.isHostDown(host))) await sessions.store.setHostDown(host, true);
    for (const id of await sessions.store.liveIds(host)) {
      const rec = await sessions.store.get(id);
      if (!(await sessions.store.terminate({ id, host }, 'host_down'))) continue;
      await executions.dropSessionData(id).catch(() => undefined);
      metrics.sessionsTerminated.inc({ reason: 'host_down' });
      metrics.reaperActions.inc({ action: 'host_down' });
      logger.warn({ sessionId: id, host, containerId: rec?.containerId }, 'session terminated: its Docker host is down');
    }
  }

  /**
   * The engine answers again (after a down spell, or after a few missed pings): remove containers
   * whose session ended meanwhile, end sessions whose container did not survive, then let the API
   * place sessions here again. A pass that fails leaves the flag for the next tick.
   */
  private async recover(wasDown: boolean, followUp = false) {
    const { host, logger } = this.opts;
    const cleanup = new Cleanup({
      sessions: this.opts.sessions,
      executions: this.opts.executions,
      redis: this.opts.redis,
      namespace: this.opts.namespace,
      logger,
      metrics: this.metrics,
    });
    try {
      const plan = await cleanup.plan({ hosts: [host], graceMs: this.opts.graceMs, kinds: ['orphan_container', 'dead_record'] });
      // Without the records or the engine's list nothing can be judged: try again next tick.
      if (plan.recordsError) throw new Error(`records unreadable: ${plan.recordsError}`);
      const engineWarning = plan.warnings.find((w) => w.startsWith(`host ${host}:`));
      if (engineWarning) throw new Error(engineWarning);
      for (const w of plan.warnings) logger.warn({ host }, `host recovery: ${w}`);
      const summary = await cleanup.apply(plan);
      if (summary.failures.length) throw new Error(summary.failures.map((f) => f.error).join('; '));
      const removed = summary.kinds.orphan_container.removed;
      const ended = summary.kinds.dead_record.removed;
      if (removed || ended) logger.info({ host, containersRemoved: removed, sessionsEnded: ended }, 'leftovers of the down spell cleared');
    } finally {
      await cleanup.close().catch(() => undefined);
    }
    if (wasDown) await this.opts.sessions.store.setHostDown(host, false);
    // A container younger than the grace was left alone just now: once it has aged, look again.
    this.followUpAt = followUp ? null : Date.now() + this.opts.graceMs;
  }
}
