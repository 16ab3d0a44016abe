import type { SessionPart } from '../infra/keys';
import type { SessionRecord } from '../sessions/session-store';
import type { CleanupAction, CleanupContext } from './cleanup-types';


/** Job states searched for jobs of gone sessions. */
const JOB_STATES = ['wait', 'delayed', 'prioritized', 'failed'] as const;

export interface KeyScan {
  sessionIds: Set<string>;
  sessionParts: Map<string, Set<SessionPart>>;
  execs: Set<string>;
  execEvents: Set<string>;
  figures: Set<string>;
  hostSets: Set<string>;
}

/** One SCAN over the namespace, sorted into the key families cleanup knows (`Keys.parse`); others are never touched. */
export async function scanKeys(ctx: CleanupContext): Promise<KeyScan> {
  const scan: KeyScan = { sessionIds: new Set(), sessionParts: new Map(), execs: new Set(), execEvents: new Set(), figures: new Set(), hostSets: new Set() };
  let cursor = '0';
  do {
    const [next, keys] = await ctx.opts.redis.scan(cursor, 'MATCH', `${ctx.keys.prefix}*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      const k = ctx.keys.parse(key);
      if (!k) continue;
      switch (k.family) {
        case 'session':
          scan.sessionIds.add(k.id);
          break;
        case 'sessionPart': {
          const parts = scan.sessionParts.get(k.id) ?? new Set();
          parts.add(k.part);
          scan.sessionParts.set(k.id, parts);
          break;
        }
        case 'execution':
          scan.execs.add(k.id);
          break;
        case 'executionEvents':
          scan.execEvents.add(k.id);
          break;
        case 'figure':
          scan.figures.add(k.id);
          break;
        case 'hostSessions':
          scan.hostSets.add(k.id);
          break;
      }
    }
  } while (cursor !== '0');
  return scan;
}

/**
 * Redis data of sessions that are gone (kind `leftover_data`): execution records, event logs,
 * figures, seq/exec lists, index entries, queued or failed jobs, and the figures and index entries
 * of tombstones.
 */
export async function planLeftovers(
  ctx: CleanupContext,
  scan: KeyScan,
  records: Map<string, SessionRecord>,
  hosts: string[],
  now: number,
  olderThanMs: number | undefined,
): Promise<CleanupAction[]> {
  const k = ctx.keys;
  const groups = new Map<string | null, Required<Pick<CleanupAction, 'keys' | 'index' | 'jobs'>> & { lastSign: number }>();
  const group = (sid: string | null) => {
    let g = groups.get(sid);
    if (!g) groups.set(sid, (g = { keys: [], index: [], jobs: [], lastSign: 0 }));
    return g;
  };
  const state = (sid: string): 'live' | 'gone' | 'terminated' => {
    const r = records.get(sid);
    return !r ? 'gone' : r.status === 'terminated' ? 'terminated' : 'live';
  };

  // Per-session keys; a tombstone keeps its execution records (the API still serves them), not its figures.
  const figOwner = new Map<string, string>();
  for (const [sid, parts] of scan.sessionParts) {
    const st = state(sid);
    if (parts.has('figs')) {
      for (const f of await ctx.opts.redis.smembers(k.sessionFigures(sid))) figOwner.set(f, sid);
    }
    if (st === 'live') continue;
    for (const part of parts) {
      if (st === 'terminated' && part !== 'figs' && part !== 'figbytes') continue;
      group(sid).keys.push(k.sessionPart(sid, part));
    }
  }
  for (const fid of scan.figures) {
    const sid = figOwner.get(fid) ?? null;
    if (sid === null || state(sid) !== 'live') group(sid).keys.push(k.figure(fid));
  }

  // Execution records and event logs belong to the session named in the record.
  const execIds = [...new Set([...scan.execs, ...scan.execEvents])];
  for (let i = 0; i < execIds.length; i += 500) {
    const chunk = execIds.slice(i, i + 500);
    const raws = await ctx.opts.redis.mget(chunk.map((id) => k.execution(id)));
    chunk.forEach((eid, j) => {
      let sid: string | null = null;
      let at = 0;
      try {
        const rec = raws[j] ? (JSON.parse(raws[j]!) as { sessionId?: string; queuedAt?: number; finishedAt?: number | null }) : null;
        sid = rec?.sessionId ?? null;
        at = Math.max(rec?.queuedAt ?? 0, rec?.finishedAt ?? 0);
      } catch {
        sid = null;
      }
      if (sid !== null && state(sid) !== 'gone') return;
      const g = group(sid);
      g.lastSign = Math.max(g.lastSign, at);
      if (scan.execs.has(eid)) g.keys.push(k.execution(eid));
      if (scan.execEvents.has(eid)) g.keys.push(k.executionEvents(eid));
    });
  }

  // Index entries that point at nothing (or at a tombstone, for the live-only indexes).
  for (const sid of await ctx.opts.redis.zrange(k.sessions(), 0, -1)) {
    if (state(sid) === 'gone') group(sid).index.push({ key: k.sessions(), member: sid, type: 'zset' });
  }
  for (const sid of await ctx.opts.redis.zrange(k.expiry(), 0, -1)) {
    if (state(sid) !== 'live') group(sid).index.push({ key: k.expiry(), member: sid, type: 'zset' });
  }
  for (const host of scan.hostSets) {
    for (const sid of await ctx.opts.redis.smembers(k.hostSessions(host))) {
      if (state(sid) !== 'live') group(sid).index.push({ key: k.hostSessions(host), member: sid, type: 'set' });
    }
  }

  // Jobs of gone sessions: they can never run; jobs of tombstones are failed properly by the worker.
  for (const host of hosts) {
    const q = ctx.queue(host);
    for (let start = 0; ; start += 1000) {
      const jobs = await q.getJobs([...JOB_STATES], start, start + 999, true);
      for (const job of jobs) {
        const sid = (job?.data as { sessionId?: string } | undefined)?.sessionId;
        if (!job?.id || !sid || state(sid) !== 'gone') continue;
        const g = group(sid);
        g.jobs.push({ host, jobId: job.id });
        g.lastSign = Math.max(g.lastSign, job.finishedOn ?? job.timestamp ?? 0);
      }
      if (jobs.length < 1000) break;
    }
  }

  const actions: CleanupAction[] = [];
  for (const [sid, g] of groups) {
    if (!g.keys.length && !g.index.length && !g.jobs.length) continue;
    const rec = sid ? records.get(sid) : undefined;
    const lastSign = Math.max(g.lastSign, rec?.terminatedAt ?? 0);
    if (olderThanMs !== undefined && lastSign && now - lastSign < olderThanMs) continue;
    const what = [
      g.keys.length ? `${g.keys.length} key(s)` : '',
      g.index.length ? `${g.index.length} index entr${g.index.length === 1 ? 'y' : 'ies'}` : '',
      g.jobs.length ? `${g.jobs.length} job(s)` : '',
    ]
      .filter(Boolean)
      .join(', ');
    actions.push({
      kind: 'leftover_data',
      sessionId: sid,
      host: rec?.host ?? null,
      containerId: null,
      reason: `${sid === null ? 'unowned' : rec ? 'terminated session' : 'gone session'}: ${what}`,
      sessionState: rec ? 'terminated' : 'gone',
      keys: g.keys,
      index: g.index,
      jobs: g.jobs,
    });
  }
  return actions;
}

/** A figure key with no owner may belong to a session whose set appeared mid-scan: look again. */
export async function recheckUnownedFigures(ctx: CleanupContext, a: CleanupAction) {
  const owned = new Set<string>();
  const scan = await scanKeys(ctx);
  for (const [sid, parts] of scan.sessionParts) {
    if (!parts.has('figs')) continue;
    const rec = await ctx.opts.sessions.store.get(sid);
    if (rec && rec.status !== 'terminated') for (const f of await ctx.opts.redis.smembers(ctx.keys.sessionFigures(sid))) owned.add(ctx.keys.figure(f));
  }
  a.keys = (a.keys ?? []).filter((key) => !owned.has(key));
}
