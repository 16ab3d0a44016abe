/** Every Redis key sessionbox uses, in one place, scoped by namespace. */
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
  /** zset of an API key's session records (live and tombstones), scored by creation: its listing. */
  ownerIndex(owner: string) {
    return `${this.prefix}owner:${owner}:index`;
  }
  /** hash of a host's sessions (and pending creates) -> the engine memory cap (MiB) each holds (host-budget.ts). */
  hostCommitted(host: string) {
    return `${this.prefix}host:${host}:committed`;
  }
  pool(host: string) {
    return `${this.prefix}pool:${host}`;
  }
  /** zset of warm-pool creations under way (token -> deadline), counted against the pool size. */
  poolFilling(host: string) {
    return `${this.prefix}pool:${host}:filling`;
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
}
