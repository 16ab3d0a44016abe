/** The per-session keys beside the session's hash. */
export type SessionPart = 'execs' | 'seqs' | 'figs' | 'figbytes';

/** A key of a family cleanup sorts, as `Keys.parse` names it. */
export type ParsedKey =
  | { family: 'session'; id: string }
  | { family: 'sessionPart'; id: string; part: SessionPart }
  | { family: 'execution'; id: string }
  | { family: 'executionEvents'; id: string }
  | { family: 'figure'; id: string }
  | { family: 'hostSessions'; id: string };

/** Every Redis key sessionbox uses, in one place, scoped by namespace. */
/**
 * The warm pool's two tiers: `eager` containers have numpy, pandas and matplotlib imported (≈ 72 MiB
 * each, a plot answers at once); `lazy` ones import them on first use (≈ 20 MiB each, a `print`
 * answers at once). A claim takes an eager one first.
 */
export const POOL_TIERS = ['eager', 'lazy'] as const;
export type PoolTier = (typeof POOL_TIERS)[number];

export class Keys {
  readonly prefix: string;
  constructor(readonly namespace: string) {
    this.prefix = `sb:${namespace}:`;
  }
  session(id: string) {
    return `${this.prefix}session:${id}`;
  }
  sessionExecutions(id: string) {
    return `${this.prefix}session:${id}:execs`;
  }
  sessionSeqs(id: string) {
    return `${this.prefix}session:${id}:seqs`;
  }
  sessionFigures(id: string) {
    return `${this.prefix}session:${id}:figs`;
  }
  /** Bytes of figures the session holds (its figure budget). */
  sessionFigureBytes(id: string) {
    return `${this.prefix}session:${id}:figbytes`;
  }
  sessionPart(id: string, part: SessionPart) {
    if (part === 'figbytes') return this.sessionFigureBytes(id);
    return part === 'execs' ? this.sessionExecutions(id) : part === 'seqs' ? this.sessionSeqs(id) : this.sessionFigures(id);
  }
  /** zset of every session record, scored by creation time. */
  sessions() {
    return `${this.prefix}sessions`;
  }
  /** zset of live sessions, scored by expiry time: what the reaper reads. */
  expiry() {
    return `${this.prefix}expiry`;
  }
  hostSessions(host: string) {
    return `${this.prefix}host:${host}:sessions`;
  }
  hostDown(host: string) {
    return `${this.prefix}host:${host}:down`;
  }
  execution(id: string) {
    return `${this.prefix}exec:${id}`;
  }
  executionEvents(id: string) {
    return `${this.prefix}exec:${id}:events`;
  }
  figure(id: string) {
    return `${this.prefix}fig:${id}`;
  }
  /** JSON `{ path, size, expiresAt, owner, … }` of a terminated session's archived files. */
  archive(sessionId: string) {
    return `${this.prefix}archive:${sessionId}`;
  }
  /** zset of an API key's sessions (and pending creates), scored by when they were counted (key-limits.ts). */
  ownerSessions(owner: string) {
    return `${this.prefix}owner:${owner}:sessions`;
  }
  /** zset of an API key's executions of the last minute, scored by time (key-limits.ts). */
  ownerExecutions(owner: string) {
    return `${this.prefix}owner:${owner}:execs`;
  }
  /** hash of an API key's sessions (and pending creates) -> "memoryMb+diskMb cpus" they hold (key-limits.ts). */
  ownerResources(owner: string) {
    return `${this.prefix}owner:${owner}:resources`;
  }
  /** zset of an API key's executions not yet finished, member `sessionId:executionId`, scored by submission (key-limits.ts). */
  ownerInflight(owner: string) {
    return `${this.prefix}owner:${owner}:inflight`;
  }
  /** hash of an API key's sessions -> bytes of figures each holds (its figure budget; execution-store.ts). */
  ownerFigureBytes(owner: string) {
    return `${this.prefix}owner:${owner}:figbytes`;
  }
  /** zset of an API key's archives (session ids), scored by creation (session-archives.ts). */
  ownerArchives(owner: string) {
    return `${this.prefix}owner:${owner}:archives`;
  }
  /** zset of an API key's session records (live and tombstones), scored by creation: its listing. */
  ownerIndex(owner: string) {
    return `${this.prefix}owner:${owner}:index`;
  }
  /** hash of a host's sessions (and pending creates) -> the engine memory cap (MiB) each holds (host-budget.ts). */
  hostCommitted(host: string) {
    return `${this.prefix}host:${host}:committed`;
  }
  /**
   * string: the session a container serves when its `sessionbox.session-id` label names another id
   * (a hibernated session woken into a warm-pool container, whose labels cannot change).
   */
  containerAlias(labelId: string) {
    return `${this.prefix}alias:${labelId}`;
  }
  /** list of a host's warm containers of one tier (JSON `PoolEntry` each), oldest first. */
  pool(host: string, tier: PoolTier = 'eager') {
    return tier === 'eager' ? `${this.prefix}pool:${host}` : `${this.prefix}pool:${host}:${tier}`;
  }
  /** zset of warm-pool creations under way (token -> deadline), counted against the tier's size. */
  poolFilling(host: string, tier: PoolTier = 'eager') {
    return `${this.pool(host, tier)}:filling`;
  }
  /** zset of default-limit session creates on a host (member -> time): the demand the pool grows with. */
  poolDemand(host: string) {
    return `${this.prefix}pool:${host}:demand`;
  }
  eventsChannel() {
    return `${this.prefix}exec-events`;
  }
  queuePrefix() {
    return `${this.prefix}bull`;
  }
  queueName(host: string) {
    return `exec-${host}`;
  }

  /**
   * Which key of a sorted family `key` is (null: another family, or not this namespace's). A
   * candidate only counts when the builder above gives back exactly `key`, so the two cannot drift.
   */
  parse(key: string): ParsedKey | null {
    if (!key.startsWith(this.prefix)) return null;
    const [family, id, part, ...rest] = key.slice(this.prefix.length).split(':');
    if (!id || rest.length) return null;
    const candidate = ((): ParsedKey | null => {
      switch (family) {
        case 'session':
          if (part === undefined) return { family: 'session', id };
          return part === 'execs' || part === 'seqs' || part === 'figs' || part === 'figbytes' ? { family: 'sessionPart', id, part } : null;
        case 'exec':
          return part === undefined ? { family: 'execution', id } : part === 'events' ? { family: 'executionEvents', id } : null;
        case 'fig':
          return part === undefined ? { family: 'figure', id } : null;
        case 'host':
          return part === 'sessions' ? { family: 'hostSessions', id } : null;
        default:
          return null;
      }
    })();
    return candidate && this.build(candidate) === key ? candidate : null;
  }

  private build(k: ParsedKey): string {
    switch (k.family) {
      case 'session':
        return this.session(k.id);
      case 'sessionPart':
        return this.sessionPart(k.id, k.part);
      case 'execution':
        return this.execution(k.id);
      case 'executionEvents':
        return this.executionEvents(k.id);
      case 'figure':
        return this.figure(k.id);
      case 'hostSessions':
        return this.hostSessions(k.id);
    }
  }
}
