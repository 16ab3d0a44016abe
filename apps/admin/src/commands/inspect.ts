import { Command } from 'commander';
import { toApiSession, type ExecutionRecord } from '@sessionbox/core';
import { openAdmin, recordsWarning, type GlobalOptions, type Io } from '../context';
import { fmtBytes, fmtDuration, fmtLimits, fmtMeta, iso, keyValues, parsePositiveInt, plainTable, render } from '../format';
import { sessionIdArg } from './kill';

interface InspectOptions {
  json?: boolean;
  executions: number;
}

function execJson(e: ExecutionRecord) {
  return {
    id: e.id,
    seq: e.seq,
    status: e.status,
    cause: e.cause,
    queuedAt: iso(e.queuedAt),
    startedAt: e.startedAt ? iso(e.startedAt) : null,
    finishedAt: e.finishedAt ? iso(e.finishedAt) : null,
    durationMs: e.startedAt && e.finishedAt ? e.finishedAt - e.startedAt : null,
    code: e.code,
    stdoutBytes: Buffer.byteLength(e.stdout),
    stderrBytes: Buffer.byteLength(e.stderr),
    error: e.error ? `${e.error.name}: ${e.error.value}` : null,
    figures: e.figures.length,
    files: e.files.map((f) => f.path),
    usage: e.usage,
    workerId: e.workerId,
  };
}

const oneLine = (s: string, n = 40) => {
  const l = s.split('\n').find((x) => x.trim()) ?? '';
  return l.length > n ? l.slice(0, n - 1) + '…' : l;
};

export function inspectCommand(io: Io, setExit: (code: number) => void): Command {
  return new Command('inspect')
    .description('Show everything known about one session: its record, its container(s) and recent executions.')
    .argument('<id>', 'session id', sessionIdArg)
    .option('--json', 'print JSON instead of text')
    .option('-n, --executions <n>', 'how many recent executions to show', parsePositiveInt, 10)
    .addHelpText(
      'after',
      `
Exit codes: 0 found, 1 not found in this namespace (or records unreadable), 2 usage.

Example:
  sessionbox-admin inspect 3b0c6d2e-5f0e-4a51-9d0e-2a4f1c9e7b11 --executions 5`,
    )
    .action(async (id: string, o: InspectOptions, cmd: Command) => {
      const ctx = await openAdmin(cmd.optsWithGlobals<GlobalOptions>());
      try {
        const d = await ctx.inventory.describe(id, { executions: o.executions });
        recordsWarning(io, d.recordsError);
        for (const h of d.hostErrors) io.err.write(`warning: host ${h.host}: containers could not be listed (${h.error})\n`);
        const found = !!d.record || d.containers.length > 0;
        const now = Date.now();
        if (o.json) {
          io.out.write(
            JSON.stringify(
              {
                namespace: ctx.config.namespace,
                id,
                found,
                recordsError: d.recordsError,
                record: d.record ? { ...toApiSession(d.record), owner: d.record.owner, containerId: d.record.containerId, restoredFrom: d.record.restoredFrom } : null,
                containers: d.containers.map((c) => ({
                  id: c.id,
                  name: c.name,
                  host: c.host,
                  state: c.state,
                  running: c.running,
                  oomKilled: c.oomKilled ?? null,
                  exitCode: c.exitCode ?? null,
                  createdAt: c.createdAt.toISOString(),
                  memoryBytes: c.usage?.memoryBytes ?? null,
                  labels: c.labels,
                })),
                executions: d.executions.map(execJson),
              },
              null,
              2,
            ) + '\n',
          );
        } else if (!found) {
          io.out.write(`session ${id}: nothing in namespace ${ctx.config.namespace} (no record, no container)\n`);
        } else {
          const r = d.record;
          io.out.write(`Session ${id} (namespace ${ctx.config.namespace})\n`);
          if (r) {
            const live = r.status !== 'terminated';
            io.out.write(
              keyValues([
                ['status', r.status],
                ['owner', r.owner || '-'],
                ['host', r.host],
                ['container', r.containerId],
                ['created', `${iso(r.createdAt)} (${fmtDuration(now - r.createdAt)} ago)`],
                ['last active', `${iso(r.lastActiveAt)} (idle ${fmtDuration(now - r.lastActiveAt)})`],
                ['expires', live ? `${iso(r.expiresAt)} (${r.expiresAt >= now ? 'in ' + fmtDuration(r.expiresAt - now) : 'overdue ' + fmtDuration(now - r.expiresAt)})` : '-'],
                ['ttl', `${r.ttlSeconds}s`],
                ['limits', fmtLimits(r.limits)],
                ['metadata', fmtMeta(r.metadata)],
                ...(r.terminatedAt ? ([['terminated', `${iso(r.terminatedAt)} (${r.terminationReason ?? '?'})`]] as [string, string][]) : []),
                ...(r.restoredFrom ? ([['restored from', r.restoredFrom]] as [string, string][]) : []),
              ]),
            );
          } else if (!d.recordsError) io.out.write('  record:     none (an orphan: `sessionbox-admin cleanup` removes its container)\n');
          io.out.write(`\nContainers (${d.containers.length}):\n`);
          for (const c of d.containers) {
            io.out.write(
              keyValues([
                ['id', `${c.id.slice(0, 12)} (${c.name}) on ${c.host}`],
                ['state', `${c.state}${c.oomKilled ? ', OOM-killed' : ''}${!c.running && c.exitCode !== undefined ? `, exit code ${c.exitCode}` : ''}`],
                ['created', iso(c.createdAt.getTime())],
                ['memory', c.usage ? `${fmtBytes(c.usage.memoryBytes)}${r ? ` of ${r.limits.memoryMb} MiB` : ''}` : '-'],
                ['labels', Object.entries(c.labels).filter(([k]) => k.startsWith('sessionbox.')).map(([k, v]) => `${k}=${v}`).join(' ')],
              ]),
            );
          }
          io.out.write(`\nRecent executions (${d.executions.length}, newest first):\n`);
          if (d.executions.length) {
            const t = plainTable(['  EXECUTION', 'SEQ', 'STATUS', 'CAUSE', 'QUEUED', 'DURATION', 'OUT', 'CODE']);
            for (const e of d.executions) {
              const dur = e.startedAt && e.finishedAt ? `${e.finishedAt - e.startedAt} ms` : '-';
              t.push([`  ${e.id}`, e.seq, e.status, e.cause ?? '-', iso(e.queuedAt), dur, fmtBytes(Buffer.byteLength(e.stdout)), oneLine(e.code)]);
            }
            io.out.write(render(t));
          }
        }
        setExit(found && !d.recordsError && !d.hostErrors.length ? 0 : 1);
      } finally {
        await ctx.close();
      }
    });
}
