import type { Logger } from 'pino';
import { errMsg } from './err-msg';

export interface TimerLoopOptions {
  /** For the log line of a failed run: "<name> failed". */
  name: string;
  /** One pass; the next one is scheduled only after it settles, so passes never overlap. */
  run: () => Promise<unknown>;
  /** Pause between the end of a pass and the next; a function is asked again each time (for back-off). */
  intervalMs: number | (() => number);
  logger: Logger;
  /** `now` (default): the first pass runs at `start()`; `after-interval`: one interval later. */
  firstRun?: 'now' | 'after-interval';
  /** Instead of the default warning; it must not throw. */
  onError?: (err: unknown) => void;
  /** The loop's timer does not keep the process alive. */
  unref?: boolean;
}

/**
 * A background loop of the worker (reaper, host monitor, warm pool, archive sweep): run, wait,
 * run again, until `stop()`, which cancels the next pass and waits for the one under way.
 */
export class TimerLoop {
  private timer: NodeJS.Timeout | null = null;
  private current: Promise<void> | null = null;
  private stopped = true;

  constructor(readonly opts: TimerLoopOptions) {}

  get running(): boolean {
    return !this.stopped;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    if (this.opts.firstRun === 'after-interval') this.schedule();
    else this.pass();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.current;
  }

  private pass() {
    this.timer = null;
    this.current = new Promise((resolve) => resolve(this.opts.run()))
      .then(
        () => undefined,
        (err) => (this.opts.onError ? this.opts.onError(err) : this.opts.logger.warn({ err: errMsg(err) }, `${this.opts.name} failed`)),
      )
      .finally(() => {
        this.current = null;
        this.schedule();
      });
  }

  private schedule() {
    if (this.stopped) return;
    const ms = typeof this.opts.intervalMs === 'function' ? this.opts.intervalMs() : this.opts.intervalMs;
    this.timer = setTimeout(() => this.pass(), ms);
    if (this.opts.unref) this.timer.unref();
  }
}
