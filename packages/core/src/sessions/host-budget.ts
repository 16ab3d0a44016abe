import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Keys } from '../infra/keys';
import type { ContainerRuntime } from '../runtime/container-runtime';

export interface HostBudgetOptions {
  redis: Redis;
  namespace: string;
  runtimes: Map<string, ContainerRuntime>;
  /** Memory of every host (MiB); null: ask each engine once (MemTotal). */
  hostMemoryMb: number | null;
  /** Engine memory caps of a host's sessions may add up to this many times its memory. */
  overcommit: number;
}

/** A reservation of engine memory on one host: `commit` once the session is recorded, `release` when it was not made. */
export interface HostReservation {
  commit(sessionId: string): Promise<void>;
  release(): Promise<void>;
}

/** A pending reservation older than this belongs to a create that crashed midway. */
const PENDING_STALE_MS = 10 * 60_000;

// Sums what the host's live sessions and pending creates hold (dropping ended ones as it meets
// them) and takes the reservation only if it still fits; the check and the add are one step.
const RESERVE = `
local now, stale = tonumber(ARGV[4]), tonumber(ARGV[5])
local total = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f, v = all[i], tonumber(all[i + 1])
  local ts = string.match(f, '^pending:(%d+):')
  if ts then
    if tonumber(ts) < now - stale then redis.call('HDEL', KEYS[1], f) else total = total + v end
  elseif redis.call('SISMEMBER', KEYS[2], f) == 1 then total = total + v
  else redis.call('HDEL', KEYS[1], f) end
end
if total + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return total end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return -1`;

/** What a host has committed to its sessions (their engine memory caps), so that it never accepts more than it can hold. */
export class HostBudget {
  private readonly k: Keys;
  private readonly memoryMb = new Map<string, Promise<number>>();

  constructor(readonly opts: HostBudgetOptions) {
    this.k = new Keys(opts.namespace);
  }

  /** The host's memory in MiB (configured, or its engine's MemTotal). */
  async hostMemoryMb(host: string): Promise<number> {
    if (this.opts.hostMemoryMb !== null) return this.opts.hostMemoryMb;
    let mb = this.memoryMb.get(host);
    if (!mb) {
      // One engine call for the creates that arrive together; a failed one is asked again next time.
      const rt = this.opts.runtimes.get(host);
      mb = rt ? rt.memoryBytes().then((bytes) => Math.floor(bytes / (1024 * 1024))) : Promise.resolve(0);
      mb.catch(() => this.memoryMb.delete(host));
      this.memoryMb.set(host, mb);
    }
    return mb;
  }

  /** Reserves `mb` of engine memory on `host`; null when it does not fit. */
  async reserve(host: string, mb: number): Promise<HostReservation | null> {
    const cap = Math.floor((await this.hostMemoryMb(host)) * this.opts.overcommit);
    const key = this.k.hostCommitted(host);
    const now = Date.now();
    const token = `pending:${now}:${randomUUID()}`;
    const r = Number(await this.opts.redis.eval(RESERVE, 2, key, this.k.hostSessions(host), token, mb, cap, now, PENDING_STALE_MS));
    if (r >= 0) return null;
    const redis = this.opts.redis;
    return {
      // After the record exists (the session is then in the host's live set, so it is not pruned).
      commit: async (sessionId) => {
        await redis.multi().hset(key, sessionId, mb).hdel(key, token).exec().catch(() => undefined);
      },
      release: async () => {
        await redis.hdel(key, token).catch(() => undefined);
      },
    };
  }
}
