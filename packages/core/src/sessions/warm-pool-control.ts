/** What a worker does with its warm pool: a real `WarmPool`, or `disabledWarmPool` when SESSIONBOX_POOL_SIZE is 0. */
export interface WarmPoolControl {
  start(): void;
  /** Stops refilling and removes the listed containers. */
  stop(): Promise<void>;
}

/** No pool: nothing to start, nothing to remove. */
export const disabledWarmPool: WarmPoolControl = {
  start() {},
  async stop() {},
};
