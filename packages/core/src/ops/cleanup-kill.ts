import { Labels } from '../runtime/labels';
import type { SessionRecord } from '../sessions/session-store';
import { errMsg, type CleanupContext } from './cleanup-types';

export interface KillResult {
  id: string;
  /** `terminated` now, already `terminated` before, `not_found`, or `containers_only` when records were unreadable. */
  outcome: 'terminated' | 'already_terminated' | 'not_found' | 'containers_only' | 'failed';
  containersRemoved: number;
  purged: boolean;
  error?: string;
}

/**
 * Ends sessions now: the session is terminated (container removed, record kept as a tombstone,
 * or deleted with all its data when `purge`), and any other container labelled with its id is removed.
 * Idempotent: a session already gone is not an error.
 */
export async function killSession(ctx: CleanupContext, id: string, opts: { reason?: string; purge?: boolean } = {}): Promise<KillResult> {
  const result: KillResult = { id, outcome: 'not_found', containersRemoved: 0, purged: false };
  const redisOk = !ctx.opts.redisError;
  try {
    if (redisOk) {
      const rec = await ctx.opts.sessions.store.get(id);
      if (rec && rec.status !== 'terminated') {
        const had = await ctx.opts.sessions.runtime(rec.host).inspect(rec.containerId);
        await ctx.opts.sessions.terminate(rec, opts.reason ?? 'admin_kill');
        result.outcome = 'terminated';
        if (had) result.containersRemoved++;
      } else if (rec) result.outcome = 'already_terminated';
      if (opts.purge && rec) {
        await purge(ctx, rec);
        result.purged = true;
      }
    } else result.outcome = 'containers_only';
    const listed = await ctx.inventory.listContainers(ctx.inventory.hosts, [`${Labels.sessionId}=${id}`]);
    const errors = listed.filter((h) => h.error).map((h) => `host ${h.host}: ${h.error}`);
    for (const h of listed) {
      for (const c of h.containers) {
        await ctx.removeContainer(h.host, c.id);
        result.containersRemoved++;
      }
    }
    if (errors.length) throw new Error(errors.join('; '));
    if (!redisOk) result.error = `records could not be read (Redis: ${ctx.opts.redisError})`;
  } catch (err) {
    result.outcome = 'failed';
    result.error = errMsg(err);
  }
  return result;
}

/** Deletes a session's record, indexes and data outright (no tombstone). */
async function purge(ctx: CleanupContext, rec: SessionRecord) {
  const k = ctx.keys;
  const execIds = await ctx.opts.redis.lrange(k.sessionExecutions(rec.id), 0, -1);
  const figs = await ctx.opts.redis.smembers(k.sessionFigures(rec.id));
  await ctx.opts.sessions.store.purge(rec);
  const keys = [k.sessionSeqs(rec.id), ...figs.map((f) => k.figure(f)), ...execIds.flatMap((e) => [k.execution(e), k.executionEvents(e)])];
  for (let i = 0; i < keys.length; i += 500) await ctx.opts.redis.del(...keys.slice(i, i + 500));
}
