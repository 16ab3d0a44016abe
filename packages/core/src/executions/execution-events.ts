import type { Redis } from 'ioredis';
import { Keys } from '../infra/keys';
import { closeRedis } from '../infra/redis';

/**
 * One subscriber connection per process that wakes whoever waits on an execution
 * (`?wait=true`, SSE streams) when the worker appends to its event log.
 */
export class ExecutionEvents {
  private readonly listeners = new Map<string, Set<(type?: string) => void>>();
  private readonly keys: Keys;
  private ready: Promise<unknown> | null = null;

  constructor(
    private readonly subscriber: Redis,
    namespace: string,
  ) {
    this.keys = new Keys(namespace);
    // Messages are `<executionId>:<event type>` (a bare id, as older workers send, means "something happened").
    subscriber.on('message', (_channel: string, message: string) => {
      const sep = message.indexOf(':');
      const set = this.listeners.get(sep < 0 ? message : message.slice(0, sep));
      const type = sep < 0 ? undefined : message.slice(sep + 1);
      if (set) for (const fn of [...set]) fn(type);
    });
  }

  start(): Promise<unknown> {
    this.ready ??= this.subscriber.subscribe(this.keys.eventsChannel());
    return this.ready;
  }

  /** Calls `fn` after each new event of the execution (with its type when known); returns the unsubscribe function. */
  on(executionId: string, fn: (type?: string) => void): () => void {
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
    await closeRedis(this.subscriber);
  }
}
