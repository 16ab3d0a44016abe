import { setTimeout as sleep } from 'node:timers/promises';
import { throwOnMultiError } from '../sessions/session-store';
import { deathReason } from '../runtime/death-reason';
import { errMsg, type CleanupContext } from './cleanup-types';
import { recheckUnownedFigures } from './cleanup-leftovers';
import { CLEANUP_KINDS, type CleanupAction, type CleanupKind, type CleanupPlan } from './cleanup-types';
import { findPoolEntry, mapConcurrent, sameContainer } from './session-inventory';

const DEAD_RECORD_SETTLE_MS = 1000;

/** An action the re-check found no longer due; counted as skipped, not failed. */
class Skip extends Error {}

export interface KindSummary {
  found: number;
  removed: number;
  failed: number;
  skipped: number;
}

export type CleanupOutcome = 'removed' | 'failed' | 'skipped';

export interface CleanupSummary {
  namespace: string;
  kinds: Record<CleanupKind, KindSummary>;
  failures: { action: CleanupAction; error: string }[];
  skipped: { action: CleanupAction; why: string }[];
  durationMs: number;
}

export interface CleanupProgress {
  done: number;
  total: number;
  action: CleanupAction;
  outcome: CleanupOutcome;
}

/** Carries out a plan (re-checking each action first); containers before data. */
export async function applyCleanup(ctx: CleanupContext, plan: CleanupPlan, onProgress?: (p: CleanupProgress) => void): Promise<CleanupSummary> {
  const started = Date.now();
  const { kinds } = emptySummary(ctx.opts.namespace);
  const failures: CleanupSummary['failures'] = [];
  const skipped: CleanupSummary['skipped'] = [];
  for (const a of plan.actions) kinds[a.kind].found++;
  const ordered = [...plan.actions.filter((a) => a.kind !== 'leftover_data'), ...plan.actions.filter((a) => a.kind === 'leftover_data')];
  let done = 0;
  const run = async (a: CleanupAction) => {
    let outcome: CleanupOutcome;
    try {
      await applyOne(ctx, a, plan);
      outcome = 'removed';
      ctx.opts.metrics?.reaperActions.inc({ action: `cleanup_${a.kind}` });
      ctx.opts.logger.debug({ kind: a.kind, sessionId: a.sessionId, containerId: a.containerId }, 'cleanup: removed');
    } catch (err) {
      if (err instanceof Skip) {
        outcome = 'skipped';
        skipped.push({ action: a, why: err.message });
      } else {
        outcome = 'failed';
        failures.push({ action: a, error: errMsg(err) });
        ctx.opts.logger.warn({ kind: a.kind, sessionId: a.sessionId, containerId: a.containerId, err: errMsg(err) }, 'cleanup: action failed');
      }
    }
    kinds[a.kind][outcome]++;
    onProgress?.({ done: ++done, total: ordered.length, action: a, outcome });
  };
  const conc = ctx.opts.concurrency ?? 4;
  // Like the reaper's death grace: a DELETE that has removed the container but not yet marked the
  // record must get to finish before a dead record is declared.
  const wait = plan.plannedAt + DEAD_RECORD_SETTLE_MS - Date.now();
  if (wait > 0 && plan.actions.some((a) => a.kind === 'dead_record')) await sleep(wait);
  await mapConcurrent(ordered.filter((a) => a.kind !== 'leftover_data'), conc, run);
  await mapConcurrent(ordered.filter((a) => a.kind === 'leftover_data'), conc, run);
  return { namespace: ctx.opts.namespace, kinds, failures, skipped, durationMs: Date.now() - started };
}

async function applyOne(ctx: CleanupContext, a: CleanupAction, plan: CleanupPlan): Promise<void> {
  const redisOk = !plan.recordsError;
  const store = ctx.opts.sessions.store;
  switch (a.kind) {
    case 'expired': {
      const rec = await store.get(a.sessionId!);
      if (!rec || rec.status === 'terminated') return; // someone else got there: already gone
      const now = Date.now();
      if (rec.expiresAt > now) throw new Skip('touched since the plan');
      if (rec.status === 'busy' && !a.stuck) throw new Skip('busy');
      await store.claimExpired(rec.id, now).catch(() => undefined);
      await ctx.opts.sessions.terminate(rec, 'expired');
      return;
    }
    case 'dead_record': {
      const rec = await store.get(a.sessionId!);
      if (!rec || rec.status === 'terminated') return;
      if (!sameContainer(rec.containerId, a.containerId)) throw new Skip('record changed since the plan');
      if (rec.status === 'hibernated') throw new Skip('hibernated since the plan');
      const runtime = ctx.opts.sessions.runtime(rec.host);
      const info = await runtime.inspect(rec.containerId);
      if (info && (info.running || info.state === 'paused')) throw new Skip(`container is ${info.state}`);
      // Stopped by the checkpoint of its hibernation under gVisor, which marks the record next.
      if (info && (await runtime.hasCheckpoint(rec.containerId))) throw new Skip('container is being checkpointed for hibernation');
      await ctx.opts.sessions.terminate(rec, deathReason(info));
      return;
    }
    case 'orphan_container': {
      if (a.sessionId) {
        const rec = await store.get(a.sessionId);
        if (rec && rec.status !== 'terminated' && sameContainer(rec.containerId, a.containerId)) throw new Skip('a live session uses it now');
        // A warm-pool container a hibernated session woke (or is waking) into since the plan.
        const aliased = await store.sessionForLabel(a.sessionId);
        const woken = aliased !== a.sessionId ? await store.get(aliased) : null;
        if (woken && (woken.status === 'hibernated' || sameContainer(woken.containerId, a.containerId))) throw new Skip(`session ${aliased} woke into it`);
      }
      const pool = await ctx.inventory.readPool([a.host!]).catch((err) => {
        if (a.pooled) throw err; // a pool container is only removed once the list says it is not there
        return null;
      });
      if (findPoolEntry(pool, a.containerId!, a.sessionId)) throw new Skip('listed in the warm pool now');
      await ctx.removeContainer(a.host!, a.containerId!);
      return;
    }
    case 'all': {
      if (redisOk && a.sessionId) {
        const rec = await store.get(a.sessionId);
        if (rec && rec.status !== 'terminated' && sameContainer(rec.containerId, a.containerId)) {
          await ctx.opts.sessions.terminate(rec, 'admin_cleanup');
          if (a.poolEntry) await ctx.opts.redis.lrem(a.poolEntry.key, 0, a.poolEntry.raw);
          return;
        }
      }
      await ctx.removeContainer(a.host!, a.containerId!);
      if (redisOk && a.poolEntry) await ctx.opts.redis.lrem(a.poolEntry.key, 0, a.poolEntry.raw);
      return;
    }
    case 'leftover_data': {
      const rec = a.sessionId ? await store.get(a.sessionId) : null;
      if (rec && rec.status !== 'terminated') throw new Skip('the session is live');
      const gone = !rec;
      if (!gone && a.sessionState === 'gone') throw new Skip('the session record appeared since the plan');
      if (a.sessionId === null && a.keys?.some((key) => key.startsWith(ctx.keys.figure('')))) await recheckUnownedFigures(ctx, a);
      const keys = a.keys ?? [];
      for (let i = 0; i < keys.length; i += 500) await ctx.opts.redis.del(...keys.slice(i, i + 500));
      if (a.index?.length) {
        const m = ctx.opts.redis.multi();
        for (const e of a.index) {
          if (e.key === ctx.keys.sessions() && !gone) continue; // a tombstone stays listed
          if (e.type === 'set') m.srem(e.key, e.member);
          else m.zrem(e.key, e.member);
        }
        throwOnMultiError(await m.exec());
      }
      for (const j of gone ? (a.jobs ?? []) : []) {
        const q = ctx.queue(j.host);
        const state = await q.getJobState(j.jobId);
        if (state === 'active') throw new Error(`job ${j.jobId} is running`);
        if (state !== 'unknown') await q.remove(j.jobId);
      }
      return;
    }
  }
}

export function emptySummary(namespace: string): CleanupSummary {
  return {
    namespace,
    kinds: Object.fromEntries(CLEANUP_KINDS.map((k) => [k, { found: 0, removed: 0, failed: 0, skipped: 0 }])) as Record<CleanupKind, KindSummary>,
    failures: [],
    skipped: [],
    durationMs: 0,
  };
}
