import { SessionboxError, type ExecutionEvent } from '@sessionbox/core';
import type { ApiContext } from '../context';
import { HEARTBEAT_MS } from '../sse';

/**
 * An execution's events as they are appended to its log (the same log the SSE stream reads):
 * everything already there first, then each new entry when the worker's notification arrives.
 * A periodic re-read covers a lost notification. Ends after `done`, or throws after `maxWaitMs`.
 */
export async function* followExecution(ctx: ApiContext, executionId: string, maxWaitMs: number, signal: AbortSignal): AsyncGenerator<ExecutionEvent> {
  const store = ctx.core.executionStore;
  let last = '-';
  let wake: (() => void) | null = null;
  let woken = false;
  const poke = () => {
    woken = true;
    wake?.();
  };
  await ctx.events.start();
  const off = ctx.events.on(executionId, poke);
  const timer = setInterval(poke, HEARTBEAT_MS);
  const deadline = Date.now() + maxWaitMs;
  signal.addEventListener('abort', poke);
  try {
    for (;;) {
      woken = false;
      for (const row of await store.readEvents(executionId, last)) {
        last = row.id;
        yield row.event;
        if (row.event.type === 'done') return;
      }
      if (signal.aborted) return;
      if (Date.now() > deadline) {
        throw new SessionboxError('stream_timeout', `execution ${executionId} did not finish within ${maxWaitMs} ms`, 504);
      }
      if (!woken) {
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(t);
            wake = null;
            resolve();
          };
          const t = setTimeout(done, Math.max(0, Math.min(HEARTBEAT_MS, deadline - Date.now() + 1)));
          wake = done;
        });
      }
    }
  } finally {
    off();
    clearInterval(timer);
    signal.removeEventListener('abort', poke);
  }
}
