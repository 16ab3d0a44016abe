import type { Redis } from 'ioredis';
import type { ContainerInfo, ContainerRuntime, ContainerUsage } from '../runtime/container-runtime';
import type { ExecutionRecord, ExecutionStore } from '../executions/execution-store';
import { Keys, POOL_TIERS } from '../infra/keys';
import { Labels, namespaceFilter } from '../runtime/labels';
import type { SessionRecord, SessionStore } from '../sessions/session-store';
import { errMsg } from '../infra/err-msg';

/**
 * What an operator sees for one session or one container:
 * - `ready` / `busy`: a live record whose container runs;
 * - `dead`: a live record whose container is missing or stopped;
 * - `terminated`: a tombstone (no container);
 * - `orphan`: a labelled container that no live record points at;
 * - `pool`: a warm container listed in the pool list of its host;
 * - `unknown`: a container whose records could not be read (Redis down).
 */
export type InventoryState = 'ready' | 'busy' | 'hibernated' | 'dead' | 'terminated' | 'orphan' | 'pool' | 'unknown';
export const INVENTORY_STATES: readonly InventoryState[] = ['ready', 'busy', 'hibernated', 'dead', 'terminated', 'orphan', 'pool', 'unknown'];

export interface PoolListEntry {
  host: string;
  key: string;
  /** The list element as stored, so it can be removed with LREM. */
  raw: string;
  sessionId: string | null;
  containerId: string;
  createdAt: number | null;
}

export interface HostContainers {
  host: string;
  containers: ContainerInfo[];
  error: string | null;
}

export interface InventoryRow {
  /** Session id: the record's, or the container's `sessionbox.session-id` label (null when it has none). */
  id: string | null;
  state: InventoryState;
  host: string | null;
  record: SessionRecord | null;
  container: ContainerInfo | null;
  pooled: boolean;
  usage: ContainerUsage | null;
}

export interface InventorySnapshot {
  namespace: string;
  takenAt: number;
  rows: InventoryRow[];
  /** Set when Redis could not be read: rows then come from container labels only. */
  recordsError: string | null;
  hostErrors: { host: string; error: string }[];
  poolError: string | null;
}

export interface SessionDetails {
  id: string;
  record: SessionRecord | null;
  /** Every container labelled with this session id, plus the record's own container. */
  containers: (ContainerInfo & { host: string; usage: ContainerUsage | null })[];
  executions: ExecutionRecord[];
  recordsError: string | null;
  hostErrors: { host: string; error: string }[];
}

export interface SessionInventoryOptions {
  redis: Redis;
  /** Why Redis cannot be used (e.g. it did not answer at start); records are then not read at all. */
  redisError?: string | null;
  store: SessionStore;
  executions: ExecutionStore;
  runtimes: Map<string, ContainerRuntime>;
  namespace: string;
}


/** Runs `fn` over `items` with at most `limit` calls in flight, keeping order. */
export async function mapConcurrent<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(Math.max(1, limit), items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  });
  await Promise.all(workers);
  return out;
}

/** Engine ids may be stored full or short (at least 12 hex chars): both name the same container. */
export function sameContainer(a: string | null | undefined, b: string | null | undefined): boolean {
  if (!a || !b) return false;
  if (a === b) return true;
  const [short, long] = a.length < b.length ? [a, b] : [b, a];
  return short.length >= 12 && long.startsWith(short);
}

/** The container an id names, whether the id is full or short. */
export function lookupContainer<C extends { id: string }>(byId: Map<string, C>, id: string): C | undefined {
  return byId.get(id) ?? (id.length >= 12 && id.length < 64 ? [...byId.values()].find((c) => sameContainer(c.id, id)) : undefined);
}

/** The pool-list entry of a container, matched by container id (full or short) or by session id. */
export function findPoolEntry(pool: Map<string, PoolListEntry> | null, containerId: string, sessionId: string | null): PoolListEntry | undefined {
  if (!pool) return undefined;
  const exact = pool.get(containerId);
  if (exact) return exact;
  for (const e of pool.values()) if (sameContainer(e.containerId, containerId) || (sessionId && e.sessionId === sessionId)) return e;
  return undefined;
}

/** When a container came to be: the later of the engine's time (whole seconds) and its label (ms). */
export function containerBornAt(c: ContainerInfo): number {
  const label = Date.parse(c.labels[Labels.createdAt] ?? '');
  return Math.max(c.createdAt.getTime(), Number.isFinite(label) ? label : 0);
}

/**
 * The join of session records (Redis) and containers (engine, by label) that `ls` and `inspect`
 * show. Read-only: nothing here writes to Redis or the engine.
 */
export class SessionInventory {
  readonly keys: Keys;

  constructor(readonly opts: SessionInventoryOptions) {
    this.keys = new Keys(opts.namespace);
  }

  get hosts(): string[] {
    return [...this.opts.runtimes.keys()];
  }

  runtime(host: string): ContainerRuntime | undefined {
    return this.opts.runtimes.get(host);
  }

  /** This namespace's containers on each host; a host whose engine fails is reported, not fatal. */
  async listContainers(hosts = this.hosts, extraFilters: string[] = []): Promise<HostContainers[]> {
    return Promise.all(
      hosts.map(async (host) => {
        const rt = this.opts.runtimes.get(host);
        if (!rt) return { host, containers: [], error: `no Docker host named ${host} is configured` };
        try {
          return { host, containers: await rt.list([...namespaceFilter(this.opts.namespace), ...extraFilters]), error: null };
        } catch (err) {
          return { host, containers: [], error: errMsg(err) };
        }
      }),
    );
  }

  /**
   * Records without side effects (unlike `SessionStore.list`, which prunes its index): the creation
   * index plus any extra ids (e.g. from container labels) whose record is not indexed.
   */
  async readRecords(extraIds: Iterable<string> = []): Promise<Map<string, SessionRecord>> {
    const indexed = await this.opts.redis.zrevrange(this.keys.sessions(), 0, -1);
    const ids = [...new Set([...indexed, ...extraIds])];
    const recs = await this.opts.store.getMany(ids);
    const out = new Map<string, SessionRecord>();
    for (const r of recs) if (r) out.set(r.id, r);
    return out;
  }

  /**
   * The warm-pool lists (`Keys.pool(host, tier)` of both tiers, JSON `{sessionId, containerId, createdAt}` each).
   * Throws when a list cannot be read or parsed, so callers treat pool containers as protected.
   */
  async readPool(hosts = this.hosts): Promise<Map<string, PoolListEntry>> {
    const out = new Map<string, PoolListEntry>();
    for (const host of hosts) for (const tier of POOL_TIERS) {
      const key = this.keys.pool(host, tier);
      const type = await this.opts.redis.type(key);
      if (type === 'none') continue;
      if (type !== 'list') throw new Error(`pool key ${key} is a ${type}, not a list`);
      for (const raw of await this.opts.redis.lrange(key, 0, -1)) {
        let v: { sessionId?: unknown; containerId?: unknown; createdAt?: unknown };
        try {
          v = JSON.parse(raw);
        } catch {
          throw new Error(`pool key ${key} holds an entry that is not JSON`);
        }
        if (typeof v?.containerId !== 'string') throw new Error(`pool key ${key} holds an entry without containerId`);
        out.set(v.containerId, {
          host,
          key,
          raw,
          containerId: v.containerId,
          sessionId: typeof v.sessionId === 'string' ? v.sessionId : null,
          createdAt: typeof v.createdAt === 'number' ? v.createdAt : null,
        });
      }
    }
    return out;
  }

  /** Every session and container of the namespace, joined; memory use sampled with small concurrency. */
  async snapshot(opts: { hosts?: string[]; usage?: boolean; concurrency?: number } = {}): Promise<InventorySnapshot> {
    const hosts = opts.hosts ?? this.hosts;
    const takenAt = Date.now();
    let recordsError = this.opts.redisError ?? null;
    let poolError: string | null = null;
    let records: Map<string, SessionRecord> | null = null;
    let pool = new Map<string, PoolListEntry>();

    // Records first, then containers: a session born in between shows as a young orphan, never as dead.
    if (!recordsError) {
      try {
        records = await this.readRecords();
      } catch (err) {
        recordsError = errMsg(err);
      }
    }
    if (records) {
      try {
        pool = await this.readPool(hosts);
      } catch (err) {
        poolError = errMsg(err);
      }
    }
    const listed = await this.listContainers(hosts);
    if (records) {
      const unindexed = listed.flatMap((h) => h.containers.map((c) => c.labels[Labels.sessionId])).filter((id) => id && !records!.has(id));
      if (unindexed.length) {
        try {
          for (const [id, r] of await this.readRecords(unindexed)) records.set(id, r);
        } catch (err) {
          recordsError = errMsg(err);
        }
      }
    }

    const rows: InventoryRow[] = [];
    const matched = new Set<string>();
    const hostOk = new Map(listed.map((h) => [h.host, !h.error]));
    const byId = new Map(listed.flatMap((h) => h.containers.map((c) => [c.id, c] as const)));
    for (const rec of records?.values() ?? []) {
      if (!hosts.includes(rec.host)) continue;
      const c = lookupContainer(byId, rec.containerId) ?? null;
      const live = rec.status !== 'terminated' && rec.status !== 'hibernated';
      // A hibernated session's container is its checkpoint under gVisor (stopped on purpose), not an orphan.
      const held = live || rec.status === 'hibernated';
      if (c && held) matched.add(c.id);
      let state: InventoryState;
      if (rec.status === 'hibernated') state = 'hibernated';
      else if (!live) state = 'terminated';
      else if (!hostOk.get(rec.host)) state = 'unknown';
      else if (!c || (!c.running && c.state !== 'paused')) state = 'dead';
      else state = rec.status;
      rows.push({ id: rec.id, state, host: rec.host, record: rec, container: held ? c : null, pooled: false, usage: null });
    }
    for (const h of listed) {
      for (const c of h.containers) {
        if (matched.has(c.id)) continue;
        const id = c.labels[Labels.sessionId] ?? null;
        const pooled = !!findPoolEntry(pool, c.id, id) || (!!poolError && c.labels[Labels.pool] === 'true');
        const state: InventoryState = !records ? 'unknown' : pooled ? 'pool' : 'orphan';
        rows.push({ id, state, host: h.host, record: (id && records?.get(id)) || null, container: c, pooled, usage: null });
      }
    }

    if (opts.usage !== false) {
      await mapConcurrent(rows, opts.concurrency ?? 8, async (row) => {
        if (!row.container?.running || !row.host) return;
        row.usage = await this.opts.runtimes.get(row.host)!.usage(row.container.id).catch(() => null);
      });
    }
    rows.sort((a, b) => rowTime(b) - rowTime(a));
    return {
      namespace: this.opts.namespace,
      takenAt,
      rows,
      recordsError,
      hostErrors: listed.filter((h) => h.error).map((h) => ({ host: h.host, error: h.error! })),
      poolError,
    };
  }

  /** Everything known about one session: record, containers (state, memory), recent executions. */
  async describe(id: string, opts: { executions?: number } = {}): Promise<SessionDetails> {
    let recordsError = this.opts.redisError ?? null;
    let record: SessionRecord | null = null;
    let executions: ExecutionRecord[] = [];
    if (!recordsError) {
      try {
        record = await this.opts.store.get(id);
        executions = (await this.opts.executions.listForSession(id, opts.executions ?? 10)).reverse();
      } catch (err) {
        recordsError = errMsg(err);
      }
    }
    const listed = await this.listContainers(this.hosts, [`${Labels.sessionId}=${id}`]);
    const found = listed.flatMap((h) => h.containers.map((c) => ({ host: h.host, id: c.id })));
    if (record && !found.some((c) => sameContainer(c.id, record!.containerId)) && this.opts.runtimes.has(record.host)) {
      found.push({ host: record.host, id: record.containerId });
    }
    const containers: SessionDetails['containers'] = [];
    for (const f of found) {
      const rt = this.opts.runtimes.get(f.host)!;
      const info = await rt.inspect(f.id).catch(() => null);
      if (!info) continue;
      // Only ever report containers carrying this namespace's labels.
      if (info.labels[Labels.managed] !== 'true' || info.labels[Labels.namespace] !== this.opts.namespace) continue;
      containers.push({ ...info, host: f.host, usage: info.running ? await rt.usage(f.id).catch(() => null) : null });
    }
    return {
      id,
      record,
      containers,
      executions,
      recordsError,
      hostErrors: listed.filter((h) => h.error).map((h) => ({ host: h.host, error: h.error! })),
    };
  }
}

function rowTime(r: InventoryRow): number {
  return r.record?.createdAt ?? (r.container ? containerBornAt(r.container) : 0);
}
