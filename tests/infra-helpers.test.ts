import pino from 'pino';
import { TimerLoop, coalesce, poll } from '@sessionbox/core';

/** Pure logic: the small loops every part shares (no Docker, no Redis). */

const silent = pino({ level: 'silent' });

function gate() {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return { p, open };
}

describe('coalesce', () => {
  test('wake-ups during a pass make exactly one more pass; `true` ends it for good', async () => {
    const gates = [gate(), gate()];
    let passes = 0;
    const wake = coalesce(async () => {
      await gates[passes++].p;
      return passes === 2;
    }, fail);
    const first = wake();
    await Promise.all([wake(), wake(), wake()]);
    gates[0].open();
    gates[1].open();
    await first;
    expect(passes).toBe(2);
    await wake();
    expect(passes).toBe(2);
  });

  test('an error goes to onError once and later wake-ups do nothing', async () => {
    const errors: unknown[] = [];
    let passes = 0;
    const wake = coalesce(async () => {
      passes++;
      throw new Error('broke');
    }, (e) => errors.push(e));
    await wake();
    await wake();
    expect(passes).toBe(1);
    expect(errors).toHaveLength(1);
  });
});

describe('poll', () => {
  test('returns the first defined answer', async () => {
    const seen: number[] = [];
    expect(await poll(async (i) => (seen.push(i), i === 2 ? 'yes' : undefined), { delayMs: 1 })).toBe('yes');
    expect(seen).toEqual([0, 1, 2]);
  });

  test('gives up after its tries, with undefined; errors propagate', async () => {
    let tries = 0;
    expect(await poll(async () => void tries++, { delayMs: 1, tries: 4 })).toBeUndefined();
    expect(tries).toBe(4);
    await expect(poll(async () => Promise.reject(new Error('no')), { delayMs: 1 })).rejects.toThrow('no');
  });
});

describe('TimerLoop', () => {
  test('passes never overlap, a failing pass is reported and the loop goes on, stop() waits for the pass under way', async () => {
    let active = 0;
    let maxActive = 0;
    let passes = 0;
    const errors: unknown[] = [];
    const third = gate();
    const holdThird = gate();
    const loop = new TimerLoop({
      name: 'test',
      intervalMs: () => 1,
      logger: silent,
      onError: (e) => errors.push(e),
      run: async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        passes++;
        try {
          if (passes === 1) throw new Error('first fails');
          if (passes === 3) {
            third.open();
            await holdThird.p;
          }
        } finally {
          active--;
        }
      },
    });
    loop.start();
    loop.start(); // a second start does not start a second loop
    await third.p;
    const stopped = loop.stop();
    let done = false;
    void stopped.then(() => (done = true));
    await Promise.resolve();
    expect(done).toBe(false);
    holdThird.open();
    await stopped;
    expect(passes).toBe(3);
    expect(maxActive).toBe(1);
    expect(errors).toHaveLength(1);
    expect(loop.running).toBe(false);
  });
});

function fail(err: unknown): never {
  throw err;
}
