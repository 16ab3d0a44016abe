import { FillSlots, WarmPool, WarmPoolSettings, type WarmPoolOptions } from './warm-pool';
import type { WarmPoolControl } from './warm-pool-control';

export interface WarmPoolsOptions extends Omit<WarmPoolOptions, 'size' | 'tier' | 'slots'> {
  /** Eager containers (imports done), the ones a claim takes first. */
  size: number;
  /** Lazy containers on top of them (imports on first use). */
  lazySize: number;
}

/**
 * A worker's warm pool: its eager tier and its lazy tier, refilled through one set of creation
 * slots, so that after a burst the two refills take turns instead of doubling the engine's load.
 */
export class WarmPools implements WarmPoolControl {
  readonly tiers: WarmPool[];

  constructor(opts: WarmPoolsOptions) {
    const { size, lazySize, ...common } = opts;
    const slots = new FillSlots(WarmPoolSettings.parse({ ...common, size }).fillConcurrency);
    this.tiers = [
      new WarmPool({ ...common, size, tier: 'eager', slots }),
      new WarmPool({ ...common, size: lazySize, tier: 'lazy', slots }),
    ].filter((p) => p.settings.size > 0);
  }

  start() {
    for (const p of this.tiers) p.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.tiers.map((p) => p.stop()));
  }
}
