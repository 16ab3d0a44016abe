import { Command, Option } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { CLEANUP_KINDS, RECONCILE_KINDS, type CleanupAction, type CleanupKind, type CleanupPlan, type CleanupSummary, emptySummary } from '@sessionbox/core';
import { UsageError, type GlobalOptions, type Io } from '../context';
import { openOps } from '../ops-target';
import { collectList, parseDuration, plainTable, render } from '../format';

interface CleanupOptions {
  dryRun?: boolean;
  olderThan?: number;
  grace?: number;
  all?: boolean;
  yes?: boolean;
  kind?: string[];
  host?: string;
  json?: boolean;
  progress?: boolean;
}

const SELECTABLE = CLEANUP_KINDS.filter((k) => k !== 'all');

function actionJson(a: CleanupAction) {
  return {
    kind: a.kind,
    sessionId: a.sessionId,
    host: a.host,
    containerId: a.containerId,
    reason: a.reason,
    ...(a.keys ? { keys: a.keys.length, indexEntries: a.index?.length ?? 0, jobs: a.jobs?.length ?? 0 } : {}),
  };
}

function planTable(plan: CleanupPlan): string {
  const t = plainTable(['KIND', 'SESSION', 'HOST', 'CONTAINER', 'WHY']);
  for (const a of plan.actions) t.push([a.kind, a.sessionId ?? '-', a.host ?? '-', a.containerId?.slice(0, 12) ?? '-', a.reason]);
  return render(t);
}

function summaryTable(s: CleanupSummary, kinds: CleanupKind[], dryRun: boolean): string {
  const t = plainTable(dryRun ? ['KIND', 'FOUND'] : ['KIND', 'FOUND', 'REMOVED', 'FAILED', 'SKIPPED']);
  for (const k of kinds) {
    const v = s.kinds[k];
    t.push(dryRun ? [k, v.found] : [k, v.found, v.removed, v.failed, v.skipped]);
  }
  return render(t);
}

export function cleanupCommand(io: Io, setExit: (code: number) => void): Command {
  return new Command('cleanup')
    .description('Find and remove, in one pass, what crashes left behind: expired sessions, orphan containers, dead records, leftover data.')
    .option('--dry-run', 'list what would be done; change nothing')
    .option('--older-than <duration>', 'only act on what has shown no sign of life for this long (e.g. 30m, 2h, 1d)', parseDuration)
    .option('--grace <duration>', 'leave containers and records younger than this alone: they are being born (default: SESSIONBOX_RECONCILE_GRACE_MS or 10s)', parseDuration)
    .addOption(new Option('--kind <kinds>', `only these kinds, comma-separated: ${SELECTABLE.join(', ')}`).argParser(collectList(SELECTABLE)))
    .option('--all', 'remove EVERY container of the namespace, live sessions included (their records are ended); needs --yes')
    .option('-y, --yes', 'confirm --all')
    .option('--host <name>', 'only this Docker host')
    .option('--json', 'print the plan and the summary as JSON')
    .option('--progress', 'show a progress bar even when stderr is not a terminal')
    .option('--no-progress', 'never show a progress bar')
    .addHelpText(
      'after',
      `
What counts as what:
  expired           live session past its idle TTL that no reaper ended (a busy one only once stuck
                    longer than the max execution timeout + 60s: its worker is gone)
  orphan_container  container labelled sessionbox.managed=true + this namespace that no live record
                    points at; a warm container listed in the pool list (sb:<ns>:pool:<host>) is
                    not an orphan
  dead_record       live record whose container is missing or stopped: the session is ended
  leftover_data     Redis data of sessions that are gone: execution records, event logs, figures,
                    exec/seq lists, index entries, queued or failed jobs; of tombstones only their
                    figures and live-index entries (their executions stay readable until they lapse)

Safety: containers are found by label filter only and re-checked on the engine before removal;
anything born within --grace is skipped; every action is re-checked just before it runs; already
gone counts as removed. The same pass (never --all) runs when a worker starts
(SESSIONBOX_RECONCILE_ON_START=true, the default), for the worker's host.

Exit codes: 0 ok, 1 something failed or records could not be read, 2 usage.

Examples:
  sessionbox-admin cleanup --dry-run
  sessionbox-admin cleanup --older-than 2h
  sessionbox-admin cleanup --kind orphan_container,dead_record --json
  sessionbox-admin cleanup --all --yes        # works with Redis down: removes containers by label`,
    )
    .action(async (o: CleanupOptions, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      if (o.all && !o.yes && !o.dryRun) {
        throw new UsageError(`--all removes every sessionbox container of namespace ${g.namespace}, live sessions included: add --yes to confirm (or --dry-run to see them)`);
      }
      const ctx = await openOps(g);
      try {
        if (o.host && !ctx.hosts.includes(o.host)) throw new UsageError(`no Docker host named ${o.host} (configured: ${ctx.hosts.join(', ')})`);
        const kinds = (o.kind as CleanupKind[] | undefined) ?? RECONCILE_KINDS;
        let shown: CleanupKind[] = o.all ? [...kinds.filter((k) => k !== 'orphan_container' && k !== 'expired'), 'all'] : kinds;
        const plan = await ctx.plan({
          hosts: o.host ? [o.host] : undefined,
          graceMs: o.grace ?? ctx.graceMs,
          olderThanMs: o.olderThan,
          all: !!o.all,
          kinds,
          stuckBusyMs: ctx.stuckBusyMs,
        });
        for (const w of plan.warnings) io.err.write(`warning: ${w}\n`);
        if (plan.recordsError) {
          // Without records only `all` can act; the other kinds were not examined at all.
          shown = o.all ? ['all'] : [];
          io.err.write(
            o.all
              ? 'warning: records were not updated: run cleanup again once Redis is back (sessions whose container is gone then end as dead records)\n'
              : 'warning: nothing was examined; with Redis down only --all --yes can act (it removes containers by label)\n',
          );
        }

        let summary: CleanupSummary;
        if (o.dryRun) {
          summary = emptySummary(plan.namespace);
          for (const a of plan.actions) summary.kinds[a.kind].found++;
        } else {
          const showBar = plan.actions.length > 0 && (o.progress === true || (o.progress === undefined && !o.json && !!io.err.isTTY));
          const bar = showBar
            ? new SingleBar(
                { stream: io.err, format: 'cleanup [{bar}] {value}/{total} {kind}', hideCursor: true, noTTYOutput: !io.err.isTTY, notTTYSchedule: 1000 },
                Presets.shades_classic,
              )
            : null;
          bar?.start(plan.actions.length, 0, { kind: '' });
          summary = await ctx.apply(plan, (p) => bar?.update(p.done, { kind: p.action.kind }));
          bar?.stop();
        }
        const failed = Object.values(summary.kinds).reduce((n, k) => n + k.failed, 0);

        if (o.json) {
          io.out.write(
            JSON.stringify(
              {
                namespace: plan.namespace,
                dryRun: !!o.dryRun,
                recordsError: plan.recordsError,
                warnings: plan.warnings,
                actions: plan.actions.map(actionJson),
                summary: Object.fromEntries(shown.map((k) => [k, summary.kinds[k]])),
                failures: summary.failures.map((f) => ({ ...actionJson(f.action), error: f.error })),
                skipped: summary.skipped.map((s) => ({ ...actionJson(s.action), why: s.why })),
                durationMs: summary.durationMs,
              },
              null,
              2,
            ) + '\n',
          );
        } else {
          if (plan.actions.length) io.out.write((o.dryRun ? 'Would do:\n' : 'Actions:\n') + planTable(plan) + '\n');
          if (shown.length) io.out.write(summaryTable(summary, shown, !!o.dryRun));
          for (const f of summary.failures) io.out.write(`failed: ${f.action.kind} ${f.action.sessionId ?? f.action.containerId ?? ''}: ${f.error}\n`);
          for (const s of summary.skipped) io.out.write(`skipped: ${s.action.kind} ${s.action.sessionId ?? s.action.containerId ?? ''}: ${s.why}\n`);
          io.out.write(
            o.dryRun
              ? `dry run: nothing was changed in namespace ${plan.namespace}\n`
              : `namespace ${plan.namespace}: ${plan.actions.length} found, ${plan.actions.length - failed - summary.skipped.length} removed, ${failed} failed (${summary.durationMs} ms)\n`,
          );
        }
        setExit(failed || plan.recordsError || plan.unlistedHosts.length ? 1 : 0);
      } finally {
        await ctx.close();
      }
    });
}
