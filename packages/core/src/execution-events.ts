import type { Redis } from 'ioredis';
import { Keys } from './keys';

/**
 * One subscriber connection per process that wakes whoever waits on an execution
 * (`?wait=true`, SSE streams) when the worker appends to its event log.
 */
export class ExecutionEvents {
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly keys: Keys;
  private ready: Promise<unknown> | null = null;

  constructor(
    private readonly subscriber: Redis,
    namespace: string,
  ) {
    this.keys = new Keys(namespace);
    subscriber.on('message', (_channel: string, executionId: string) => {
      const set = this.listeners.get(executionId);
      if (set) for (const fn of [...set]) fn();
    });
  }

  start(): Promise<unknown> {
    this.ready ??= this.subscriber.subscribe(this.keys.eventsChannel());
    return this.ready;
  }

  /** Calls `fn` after each new event of the execution; returns the unsubscribe function. */
  on(executionId: string, fn: () => void): () => void {
    let set = this.listeners.get(executionId);
    if (!set) this.listeners.set(executionId, (set = new Set()));
    set.add(fn);
    return () => {
      set!.delete(fn);
      if (set!.size === 0) this.listeners.delete(executionId);
    };
  }

  async close() {
    this.listeners.clear();
    await this.subscriber.quit().catch(() => this.subscriber.disconnect());
  }
}
