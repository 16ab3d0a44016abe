import type { ContainerInfo } from '../runtime/container-runtime';
import { Labels } from '../runtime/labels';
import type { SessionRecord } from '../sessions/session-store';
import { RECONCILE_KINDS, CleanupPlanOptions, errMsg, type CleanupAction, type CleanupContext, type CleanupKind, type CleanupPlan } from './cleanup-types';
import { planLeftovers, scanKeys, type KeyScan } from './cleanup-leftovers';
import { containerBornAt, findPoolEntry, lookupContainer, sameContainer, type PoolListEntry } from './session-inventory';

/** Lists what a pass would do; changes nothing. */
export async function planCleanup(ctx: CleanupContext, input: CleanupPlanOptions): Promise<CleanupPlan> {
  const o = CleanupPlanOptions.parse(input);
  const hosts = o.hosts ?? ctx.inventory.hosts;
  const wanted = new Set<CleanupKind>(o.all ? [...(o.kinds ?? RECONCILE_KINDS), 'all'] : (o.kinds ?? RECONCILE_KINDS));
  const now = Date.now();
  const old = (t: number) => o.olderThanMs === undefined || now - t >= o.olderThanMs;
  const warnings: string[] = [];
  const actions: CleanupAction[] = [];
  let recordsError = ctx.opts.redisError ?? null;

  // Order matters: pool and records are read before containers are listed, so a session born
  // during the pass shows up as a young container (protected by the grace), never as a dead record.
  let pool: Map<string, PoolListEntry> | null = null;
  let scan: KeyScan | null = null;
  let records: Map<string, SessionRecord> | null = null;
  if (!recordsError) {
    try {
      try {
        pool = await ctx.inventory.readPool(hosts);
      } catch (err) {
        pool = null;
        warnings.push(`warm-pool list unreadable (${errMsg(err)}): pool containers are left alone`);
      }
      scan = await scanKeys(ctx);
      records = await ctx.inventory.readRecords(scan.sessionIds);
    } catch (err) {
      recordsError = errMsg(err);
      records = null;
    }
  }
  if (recordsError) warnings.push(`records could not be read (Redis: ${recordsError})`);
  const listed = await ctx.inventory.listContainers(hosts);
  const unlistedHosts = listed.flatMap((h) => (h.error ? [{ host: h.host, error: h.error }] : []));
  for (const h of unlistedHosts) warnings.push(`host ${h.host}: containers could not be listed (${h.error})`);
  const hostOk = new Set(listed.filter((h) => !h.error).map((h) => h.host));
  const containers = new Map<string, ContainerInfo & { host: string }>();
  for (const h of listed) for (const c of h.containers) containers.set(c.id, { ...c, host: h.host });

  // Hibernated sessions have no container on purpose: the reaper ends them at wakeUntil.
  const live = [...(records?.values() ?? [])].filter((r) => r.status !== 'terminated' && r.status !== 'hibernated' && hosts.includes(r.host));
  const planned = new Set<string>();

  if (wanted.has('expired') && !o.all) {
    for (const rec of live) {
      if (rec.expiresAt > now) continue;
      if (rec.status === 'busy' && (o.stuckBusyMs === undefined || now - rec.expiresAt < o.stuckBusyMs)) continue;
      if (!old(rec.lastActiveAt)) continue;
      planned.add(rec.id);
      actions.push({
        kind: 'expired',
        stuck: rec.status === 'busy',
        sessionId: rec.id,
        host: rec.host,
        containerId: rec.containerId,
        reason: `idle since ${new Date(rec.lastActiveAt).toISOString()}, expired ${fmtAgo(now - rec.expiresAt)} ago${rec.status === 'busy' ? ' (stuck busy)' : ''}`,
      });
    }
  }

  // A woken session may run in a warm-pool container whose label names the id it was pooled
  // under: the record's containerId says whose it is, and an alias covers a wake under way.
  const liveByContainer = new Map([...(records?.values() ?? [])].filter((r) => r.status !== 'terminated').map((r) => [r.containerId, r] as const));
  const aliases = records ? await readAliases(ctx, containers.values(), records) : new Map<string, string>();
  /** The live session a container serves (by its label or by a record pointing at it), if any. */
  const servedBy = (c: ContainerInfo, labelId: string | null): SessionRecord | undefined => {
    if (!records) return undefined;
    const own = labelId ? records.get(labelId) : undefined;
    if (own && own.status !== 'terminated' && sameContainer(own.containerId, c.id)) return own;
    const pointing = liveByContainer.get(c.id) ?? [...liveByContainer.values()].find((r) => sameContainer(r.containerId, c.id));
    if (pointing) return pointing;
    const aliased = labelId ? records.get(aliases.get(labelId) ?? '') : undefined;
    // Its alias names a session still waking into it (the alias lapses if that wake died).
    return aliased && (aliased.status === 'hibernated' || sameContainer(aliased.containerId, c.id)) ? aliased : undefined;
  };

  let unjudged = 0;
  for (const c of containers.values()) {
    const bornAt = containerBornAt(c);
    if (now - bornAt < o.graceMs || !old(bornAt)) continue;
    const sessionId = c.labels[Labels.sessionId] ?? null;
    const pooled = c.labels[Labels.pool] === 'true';
    const served = servedBy(c, sessionId);
    const base = { sessionId: served?.id ?? sessionId, host: c.host, containerId: c.id, pooled };
    if (o.all) {
      const entry = findPoolEntry(pool, c.id, sessionId);
      actions.push({ kind: 'all', ...base, reason: `--all (${c.state})`, ...(entry ? { poolEntry: { key: entry.key, raw: entry.raw } } : {}) });
      continue;
    }
    if (!wanted.has('orphan_container')) continue;
    if (!records) {
      unjudged++;
      continue;
    }
    if (served) continue;
    const rec = sessionId ? records.get(sessionId) : undefined;
    if (findPoolEntry(pool, c.id, sessionId)) continue;
    if (pooled && !pool) continue;
    const reason = !sessionId
      ? 'no session-id label'
      : !rec
        ? 'no session record'
        : rec.status === 'terminated'
          ? `session terminated (${rec.terminationReason ?? 'unknown'})`
          : `session ${sessionId} uses container ${rec.containerId.slice(0, 12)}`;
    actions.push({ kind: 'orphan_container', ...base, reason: pooled ? `${reason}, not in the pool list` : reason });
  }
  if (unjudged) warnings.push(`${unjudged} container(s) not judged: without records an orphan cannot be told from a live session`);

  if (wanted.has('dead_record')) {
    for (const rec of live) {
      if (planned.has(rec.id) || !hostOk.has(rec.host)) continue;
      const c = lookupContainer(containers, rec.containerId);
      if (c && (c.running || c.state === 'paused')) continue;
      if (c && o.all) continue; // the `all` action of its container ends the record too
      if (now - rec.createdAt < o.graceMs || !old(rec.lastActiveAt)) continue;
      actions.push({
        kind: 'dead_record',
        sessionId: rec.id,
        host: rec.host,
        containerId: rec.containerId,
        reason: c ? `container ${c.state}` : 'container missing',
      });
    }
  }

  if (wanted.has('leftover_data') && records && scan) {
    try {
      actions.push(...(await planLeftovers(ctx, scan, records, hosts, now, o.olderThanMs)));
    } catch (err) {
      warnings.push(`leftover data not examined (${errMsg(err)})`);
    }
  }

  return { namespace: ctx.opts.namespace, hosts, plannedAt: now, all: o.all, actions, warnings, unlistedHosts, recordsError };
}

/** The aliases (`Keys.containerAlias`) of the labels that name no record: a woken session's warm-pool container. */
async function readAliases(ctx: CleanupContext, containers: Iterable<ContainerInfo>, records: Map<string, SessionRecord>): Promise<Map<string, string>> {
  const labels = [...containers].map((c) => c.labels[Labels.sessionId]).filter((id): id is string => !!id && !records.has(id));
  return ctx.opts.sessions.store.aliasesOf(labels);
}

function fmtAgo(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}
