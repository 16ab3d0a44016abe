import { cpus } from 'node:os';
import { v4 as uuidv4 } from 'uuid';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { ContainerRuntime } from '../runtime/container-runtime';
import { KernelChannel, type KernelChannelPool, type KernelEvent } from '../runtime/kernel-channel';
import { defineScripts } from '../infra/redis-scripts';
import { Keys, POOL_TIERS, type PoolTier } from '../infra/keys';
import { Labels, namespaceFilter } from '../runtime/labels';
import { disabledMetrics, type Metrics } from '../infra/metrics';
import { errMsg } from '../infra/err-msg';
import { TimerLoop } from '../infra/timer-loop';
import { backoff, poll } from '../infra/poll';
import { DEFAULT_LIMITS } from '../contract/schemas';
import { sessionContainerName, sessionLabels } from './session-service';
import type { WarmPoolControl } from './warm-pool-control';
import { withTimeout } from '../infra/timers';

/** After n failures in a row: 0.5 s, 1 s, 2 s, … up to 30 s. */
const failureBackoff = backoff(250, 30_000);

/** One element of the pool list `Keys.pool(host)`. */
/** `image`: what the container was made from; a claimer configured with another image never takes it. */
export const PoolEntry = z.object({
  sessionId: z.string(),
  containerId: z.string(),
  createdAt: z.number(),
  image: z.string().optional(),
  tier: z.enum(POOL_TIERS).optional(),
});
export type PoolEntry = z.infer<typeof PoolEntry>;

/** What one idle pooled container holds in RAM, rounded up (the bench measures about 72 MiB). */
export const POOL_CONTAINER_MB = 80;

/** Creations under way on one worker, shared by its tiers: refills take turns instead of adding up. */
export class FillSlots {
  used = 0;
  /** No new creation before this: claims were seen, and the engine serves them first. */
  holdUntil = 0;
  constructor(readonly max: number) {}
}

export const WarmPoolSettings = z.object({
  /** Warm containers kept ready on this host at least; 0 disables the pool. */
  size: z.number().int().min(0).max(1000),
  /** `lazy`: the kernels import numpy, pandas and matplotlib on first use (see `PoolTier`); its size never grows with demand. */
  tier: z.enum(POOL_TIERS).default('eager'),
  /** Memory the pool may grow into with demand, at `POOL_CONTAINER_MB` each; 0 (default) keeps it at `size`. */
  memoryBudgetMb: z.number().int().min(0).default(0),
  /** The pool's target is the default-limit creates of this last window, between `size` and the budget. */
  demandWindowMs: z.number().int().min(1000).default(120_000),
  /** A container listed longer than this is replaced (and never handed out). */
  maxAgeMs: z.number().int().min(1000),
  /**
   * Containers being made at once. Each kernel's imports cost about a second of CPU, so the default
   * (half the cores, 1 on a 2-core machine) leaves room for the sessions already running.
   */
  fillConcurrency: z
    .number()
    .int()
    .min(1)
    .max(16)
    .default(() => Math.max(1, Math.min(4, Math.floor(cpus().length / 2)))),
  /** How often the list length is checked for refills. */
  refillIntervalMs: z.number().int().min(10).default(200),
  /**
   * Refills wait until no claim has been seen for this long. A container create keeps the engine
   * busy for a few hundred ms, and during a burst the claims' inspects and first runs need it.
   */
  settleMs: z.number().int().min(0).default(1000),
  /** How often listed containers are checked against the engine and for age. */
  checkIntervalMs: z.number().int().min(100).default(5000),
  /** A creation still unfinished after this gives up its slot (and its container is removed). */
  readyTimeoutMs: z.number().int().min(1000).default(60_000),
});
export type WarmPoolSettings = z.input<typeof WarmPoolSettings>;

export interface WarmPoolOptions extends WarmPoolSettings {
  redis: Redis;
  runtime: ContainerRuntime;
  namespace: string;
  image: string;
  ociRuntime: string;
  logger: Logger;
  metrics?: Metrics;
  /** The worker's channels: a container's stream, opened for its readiness check, stays open for its first run. */
  channels?: KernelChannelPool;
  /** Shared with the worker's other tier; default: this pool's own, of `fillConcurrency`. */
  slots?: FillSlots;
}


/**
 * Containers started ahead of demand for the default limits, on one Docker host. Each is made
 * exactly like a session container (name, labels, limits, runtime) under a session id chosen in
 * advance, and is listed in `Keys.pool(host)` only once its kernel answers `ping` with ready:true.
 * Whoever takes an entry off the list (LPOP by a claim, LREM here) owns its container: a claimed
 * one becomes that session's for good; one taken back here is removed. Nothing is ever reused.
 */
export class WarmPool implements WarmPoolControl {
  readonly settings: z.output<typeof WarmPoolSettings>;
  readonly keys: Keys;
  private readonly listKey: string;
  private readonly fillingKey: string;
  private readonly demandKey: string;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly slots: FillSlots;
  private readonly loop: TimerLoop;
  private readonly metrics: Metrics;
  private lastCheck = 0;
  /** The list's length at the last tick: a shorter one means claims (or a retire) since. */
  private lastLength = 0;
  private stopped = true;
  /** Consecutive failures (of a tick or a creation): refills back off instead of hammering a sick engine or Redis. */
  private failures = 0;
  private backoffUntil = 0;

  constructor(readonly opts: WarmPoolOptions) {
    defineScripts(opts.redis);
    this.settings = WarmPoolSettings.parse(opts);
    this.keys = new Keys(opts.namespace);
    this.listKey = this.keys.pool(opts.runtime.hostName, this.settings.tier);
    this.fillingKey = this.keys.poolFilling(opts.runtime.hostName, this.settings.tier);
    this.slots = opts.slots ?? new FillSlots(this.settings.fillConcurrency);
    this.demandKey = this.keys.poolDemand(opts.runtime.hostName);
    this.metrics = opts.metrics ?? disabledMetrics();
    this.loop = new TimerLoop({
      name: 'warm pool tick',
      run: () => this.tick(),
      intervalMs: () => Math.max(this.settings.refillIntervalMs, this.backoffUntil - Date.now()),
      logger: opts.logger,
      onError: (err) => this.failed(err, 'warm pool tick failed'),
    });
  }

  get host() {
    return this.opts.runtime.hostName;
  }

  start() {
    if (this.settings.size === 0 || !this.stopped) return;
    this.stopped = false;
    this.opts.logger.info({ host: this.host, tier: this.settings.tier, size: this.settings.size, maxAgeMs: this.settings.maxAgeMs }, 'warm pool started');
    this.loop.start();
  }

  /** Entries listed now (parsed; malformed ones are skipped). */
  async entries(): Promise<(PoolEntry & { raw: string })[]> {
    const raws = await this.opts.redis.lrange(this.listKey, 0, -1);
    return raws.flatMap((raw) => {
      const parsed = PoolEntry.safeParse(safeJson(raw));
      return parsed.success ? [{ ...parsed.data, raw }] : [];
    });
  }

  /** Most containers the memory budget allows (never below `size`). */
  get maxSize(): number {
    if (this.settings.tier === 'lazy') return this.settings.size;
    return Math.max(this.settings.size, Math.floor(this.settings.memoryBudgetMb / POOL_CONTAINER_MB));
  }

  /**
   * How many to keep now: the default-limit creates of the last `demandWindowMs` (a burst of 20
   * leaves 20 ready for the next one), between `size` and `maxSize`. Back to `size` once they age out.
   */
  async target(now = Date.now()): Promise<number> {
    if (this.maxSize === this.settings.size) return this.settings.size;
    await this.opts.redis.zremrangebyscore(this.demandKey, '-inf', now - this.settings.demandWindowMs);
    const demand = await this.opts.redis.zcard(this.demandKey);
    return Math.min(this.maxSize, Math.max(this.settings.size, demand));
  }

  /** One pass: refill up to the target, and every `checkIntervalMs` retire dead, old or surplus containers. */
  async tick(now = Date.now()): Promise<void> {
    const target = await this.target(now);
    if (now - this.lastCheck >= this.settings.checkIntervalMs) {
      this.lastCheck = now;
      await this.retire(now, target);
    }
    const length = await this.opts.redis.llen(this.listKey);
    if (length < this.lastLength) this.slots.holdUntil = Math.max(this.slots.holdUntil, now + this.settings.settleMs);
    this.lastLength = length;
    while (!this.stopped && this.slots.used < this.slots.max && Date.now() >= Math.max(this.backoffUntil, this.slots.holdUntil)) {
      const token = uuidv4();
      // Taken before the round trip: the other tier's tick shares these slots and runs meanwhile.
      this.slots.used++;
      let ok = 0;
      try {
        ok = await this.opts.redis.sbPoolReserve(
          this.listKey,
          this.fillingKey,
          Date.now(),
          target,
          Date.now() + this.settings.readyTimeoutMs + 30_000,
          token,
        );
      } finally {
        if (ok !== 1) this.slots.used--;
      }
      if (ok !== 1) break;
      const p: Promise<void> = this.fill(token)
        .then(() => void (this.failures = 0))
        .catch((err) => {
          if (!this.stopped) this.failed(err, 'warm container not made');
        })
        .finally(() => {
          this.slots.used--;
          this.inFlight.delete(p);
        });
      this.inFlight.add(p);
    }
    this.metrics.poolSize.set({ host: this.host, tier: this.settings.tier }, length);
  }

  private failed(err: unknown, what: string) {
    this.failures++;
    const waitMs = failureBackoff(this.failures);
    this.backoffUntil = Date.now() + waitMs;
    this.opts.logger.warn({ host: this.host, err: errMsg(err), failures: this.failures, retryInMs: waitMs }, what);
  }

  /** Makes one container in a reserved slot and lists it once its kernel is ready. */
  private async fill(token: string): Promise<void> {
    const { runtime, namespace, logger } = this.opts;
    const sessionId = uuidv4();
    const createdAt = Date.now();
    let containerId: string | null = null;
    try {
      containerId = await runtime.createSessionContainer({
        name: sessionContainerName(namespace, sessionId),
        image: this.opts.image,
        labels: sessionLabels({ namespace, sessionId, host: this.host, now: createdAt, expiresAt: createdAt + this.settings.maxAgeMs, pool: true }),
        limits: DEFAULT_LIMITS,
        runtime: this.opts.ociRuntime,
        // Its imports yield the CPU to running sessions; raised to normal once ready.
        cpuWeight: 'low',
        lazyImports: this.settings.tier === 'lazy',
      });
      await this.waitReady(containerId);
      if (this.stopped) throw new Error('the pool stopped');
      // Warm and idle now: at normal weight before it is listed, so the claim has no engine update to make.
      await runtime.setCpuWeight(containerId, 'normal');
      const entry: PoolEntry = { sessionId, containerId, createdAt, image: this.opts.image, tier: this.settings.tier };
      const listed = await this.opts.redis.sbPoolPublish(this.listKey, this.fillingKey, token, JSON.stringify(entry));
      if (listed !== 1) throw new Error('its slot lapsed before the kernel was ready');
      this.lastLength++; // so that a claim before the next tick still reads as one
      logger.debug({ host: this.host, sessionId, containerId, ms: Date.now() - createdAt }, 'warm container listed');
    } catch (err) {
      await this.opts.redis.zrem(this.fillingKey, token).catch(() => undefined);
      if (containerId) await this.discard(containerId);
      throw err;
    }
  }

  private async waitReady(containerId: string): Promise<void> {
    const deadline = Date.now() + this.settings.readyTimeoutMs;
    const own = !this.opts.channels;
    const channel = this.opts.channels ? await this.opts.channels.get(containerId) : new KernelChannel(await this.opts.runtime.attach(containerId));
    try {
      const ready = await poll(
        async () => {
          if (this.stopped) throw new Error('the pool stopped');
          const pong = await channel.request<KernelEvent>(
            { op: 'ping', id: `pool-${uuidv4()}` },
            { isLast: (e) => e.ev === 'pong' || e.ev === 'error', timeoutMs: Math.max(1, Math.min(deadline - Date.now(), 10_000)) },
          );
          return pong.ev === 'pong' && pong.ready === true ? true : undefined;
        },
        { delayMs: (i) => Math.min(100, 20 * (i + 1)), timeoutMs: this.settings.readyTimeoutMs },
      );
      if (!ready) throw new Error(`the kernel was not ready within ${this.settings.readyTimeoutMs} ms`);
    } finally {
      if (own) channel.close();
    }
  }

  /** Takes back (LREM) entries whose container is gone, stopped, past the max age, or beyond the target (newest first), and removes them. */
  private async retire(now: number, target: number) {
    const entries = await this.entries();
    if (entries.length === 0) return;
    const running = new Set(
      (await this.opts.runtime.list([...namespaceFilter(this.opts.namespace), `${Labels.pool}=true`, `${Labels.host}=${this.host}`]))
        .filter((c) => c.running)
        .map((c) => c.id),
    );
    for (const [i, e] of entries.entries()) {
      const why =
        now - e.createdAt >= this.settings.maxAgeMs ? 'max_age' : !running.has(e.containerId) ? 'not_running' : i >= target ? 'surplus' : null;
      if (!why) continue;
      // LREM says whether we still own it: 0 means a session claimed it in the meantime.
      if ((await this.opts.redis.lrem(this.listKey, 1, e.raw)) !== 1) continue;
      this.opts.logger.info({ host: this.host, sessionId: e.sessionId, containerId: e.containerId, why }, 'warm container retired');
      await this.discard(e.containerId);
    }
  }

  private async discard(containerId: string) {
    await this.opts.channels?.drop(containerId).catch(() => undefined);
    await this.opts.runtime.remove(containerId).catch((err) =>
      this.opts.logger.warn({ host: this.host, containerId, err: errMsg(err) }, 'could not remove a warm container'),
    );
  }

  /**
   * Stops refilling, waits for creations under way, then takes back and removes every listed
   * container of this host: a stopped system keeps no idle containers (a restart refills in seconds).
   * Call it while Redis is still open.
   */
  async stop(opts: { drain?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.loop.stop();
    // A creation that outlives this wait still removes its own container when it sees the stop.
    await withTimeout(Promise.allSettled([...this.inFlight]), 15_000).catch(() => undefined);
    if (opts.drain === false) return;
    for (;;) {
      const raw = await this.opts.redis.lpop(this.listKey).catch(() => null);
      if (!raw) break;
      const parsed = PoolEntry.safeParse(safeJson(raw));
      if (parsed.success) await this.discard(parsed.data.containerId);
    }
    this.metrics.poolSize.set({ host: this.host, tier: this.settings.tier }, 0);
  }
}

export interface WarmClaimOptions {
  redis: Redis;
  namespace: string;
  runtimes: Map<string, ContainerRuntime>;
  /** The image sessions are made from: a listed container of another (a worker of an older or newer version) is not handed out. */
  image: string;
  maxAgeMs: number;
  /** Set when the pool grows with demand (SESSIONBOX_POOL_MEMORY_MB): creates are recorded for this long. */
  demandWindowMs?: number | null;
  logger: Logger;
}

/**
 * The `claimWarm` hook of `SessionService`: pops the oldest listed container of the host, from the
 * eager tier first (a plot answers at once) and then the lazy one (a `print` does). One
 * past the max age, or that the engine no longer runs, is removed and the next one is tried;
 * an empty list means a cold start. The inspect (about a millisecond) keeps a dead container
 * from ever being handed out. A listed container is already at normal CPU weight (raised when it
 * became ready), so the claim makes no engine update.
 */
export function warmClaimer(opts: WarmClaimOptions): (host: string) => Promise<{ sessionId: string; containerId: string } | null> {
  const keys = new Keys(opts.namespace);
  return async (host) => {
    const runtime = opts.runtimes.get(host);
    if (!runtime) return null;
    if (opts.demandWindowMs) {
      // Every default-limit create is demand the pool may grow with, warm or cold.
      const now = Date.now();
      const key = keys.poolDemand(host);
      void opts.redis
        .multi()
        .zadd(key, now, uuidv4())
        .zremrangebyscore(key, '-inf', now - opts.demandWindowMs)
        .pexpire(key, opts.demandWindowMs)
        .exec()
        .catch(() => undefined);
    }
    for (const tier of POOL_TIERS) {
      const claimed = await claimFrom(keys.pool(host, tier), runtime, host);
      if (claimed) return claimed;
    }
    return null;
  };

  async function claimFrom(list: string, runtime: ContainerRuntime, host: string) {
    for (;;) {
      const raw = await opts.redis.lpop(list);
      if (!raw) return null;
      const parsed = PoolEntry.safeParse(safeJson(raw));
      if (!parsed.success) continue;
      const e = parsed.data;
      const usable = e.image === opts.image && Date.now() - e.createdAt < opts.maxAgeMs;
      const info = usable ? await runtime.inspect(e.containerId).catch(() => null) : null;
      if (info?.running && info.labels[Labels.sessionId] === e.sessionId) return { sessionId: e.sessionId, containerId: e.containerId };
      opts.logger.info({ host, sessionId: e.sessionId, containerId: e.containerId, image: e.image }, 'warm container skipped (another image, too old or not running)');
      void runtime.remove(e.containerId).catch(() => undefined);
    }
  };
}

function safeJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return null;
  }
}
