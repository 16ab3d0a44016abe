import { setTimeout as sleep } from 'node:timers/promises';

export interface PollOptions {
  /** Pause after try `i` (0-based) before the next; see `backoff`. */
  delayMs: number | ((attempt: number) => number);
  /** Give up after this many tries (default: no limit). */
  tries?: number;
  /** Give up once this long has passed since the first try (default: no limit); the last pause is shortened to fit. */
  timeoutMs?: number;
}

/**
 * Asks `attempt` again and again until it returns something other than `undefined`, which is then
 * the result; `undefined` once the tries or the time are used up. Errors of `attempt` propagate.
 */
export async function poll<T>(attempt: (i: number) => Promise<T | undefined>, opts: PollOptions): Promise<T | undefined> {
  const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
  for (let i = 0; opts.tries === undefined || i < opts.tries; i++) {
    const v = await attempt(i);
    if (v !== undefined) return v;
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    const pause = typeof opts.delayMs === 'function' ? opts.delayMs(i) : opts.delayMs;
    if (opts.tries === undefined || i + 1 < opts.tries) await sleep(Math.min(pause, left));
  }
  return undefined;
}

/** Pauses that grow by `factor` from `firstMs` up to `maxMs`. */
export function backoff(firstMs: number, maxMs: number, factor = 2): (attempt: number) => number {
  return (attempt) => Math.min(maxMs, firstMs * factor ** attempt);
}
