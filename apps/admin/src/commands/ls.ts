import { Command, Option } from 'commander';
import { INVENTORY_STATES, type InventoryRow, type InventorySnapshot, type InventoryState } from '@sessionbox/core';
import { openAdmin, recordsWarning, UsageError, type GlobalOptions, type Io } from '../context';
import { collectList, collectMeta, fmtBytes, fmtDuration, fmtExpiresIn, fmtLimits, fmtMeta, plainTable, render } from '../format';

interface LsOptions {
  json?: boolean;
  status?: string[];
  meta?: Record<string, string>;
  owner?: string;
  host?: string;
  all?: boolean;
  usage: boolean;
}

/** One row of `ls --json`. */
export function rowJson(r: InventoryRow, now: number) {
  const rec = r.record;
  const c = r.container;
  const created = rec?.createdAt ?? c?.createdAt.getTime() ?? null;
  return {
    id: r.id,
    state: r.state,
    status: rec?.status ?? null,
    host: r.host,
    owner: rec?.owner ?? null,
    container: c ? { id: c.id, name: c.name, state: c.state, running: c.running, createdAt: c.createdAt.toISOString() } : null,
    pooled: r.pooled,
    createdAt: created ? new Date(created).toISOString() : null,
    lastActiveAt: rec ? new Date(rec.lastActiveAt).toISOString() : null,
    expiresAt: rec ? new Date(rec.expiresAt).toISOString() : null,
    ageSeconds: created ? Math.round((now - created) / 1000) : null,
    idleSeconds: rec ? Math.round((now - rec.lastActiveAt) / 1000) : null,
    expiresInSeconds: rec && rec.status !== 'terminated' ? Math.round((rec.expiresAt - now) / 1000) : null,
    memoryBytes: r.usage?.memoryBytes ?? null,
    limits: rec?.limits ?? null,
    metadata: rec?.metadata ?? null,
    terminatedAt: rec?.terminatedAt ? new Date(rec.terminatedAt).toISOString() : null,
    terminationReason: rec?.terminationReason ?? null,
  };
}

export function filterRows(snap: InventorySnapshot, o: Pick<LsOptions, 'status' | 'meta' | 'owner' | 'all'>): InventoryRow[] {
  const states = o.status?.length ? new Set(o.status as InventoryState[]) : null;
  return snap.rows.filter(
    (r) =>
      (states ? states.has(r.state) : o.all || r.state !== 'terminated') &&
      (!o.owner || r.record?.owner === o.owner) &&
      Object.entries(o.meta ?? {}).every(([k, v]) => r.record?.metadata[k] === v),
  );
}

export function lsCommand(io: Io, setExit: (code: number) => void): Command {
  return new Command('ls')
    .description('List the sessions and containers of the namespace: state, age, idle time, expiry, memory, limits, metadata.')
    .option('--json', 'print JSON (one object with a "sessions" array) instead of a table')
    .addOption(
      new Option('-s, --status <states>', `only these states, comma-separated or repeated: ${INVENTORY_STATES.join(', ')}`).argParser(
        collectList(INVENTORY_STATES),
      ),
    )
    .option('-m, --meta <key=value>', 'only sessions whose metadata has key=value (repeatable; all must match)', collectMeta)
    .option('--owner <name>', 'only sessions created with this API key name')
    .option('--host <name>', 'only this Docker host')
    .option('-a, --all', 'include terminated sessions (tombstones), hidden by default')
    .option('--no-usage', 'skip the per-container memory sample (faster on big hosts)')
    .addHelpText(
      'after',
      `
States: ready/busy (live, container running), dead (live record, container missing or stopped),
orphan (labelled container with no live record), pool (warm container listed in the pool),
terminated (tombstone), unknown (records unreadable: Redis down).

Exit codes: 0 ok, 1 records or a host could not be read (what could be read is still listed), 2 usage.

Examples:
  sessionbox-admin ls
  sessionbox-admin ls --status orphan,dead --json
  sessionbox-admin ls -m team=data -m env=prod`,
    )
    .action(async (o: LsOptions, cmd: Command) => {
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const ctx = await openAdmin(g);
      try {
        if (o.host && !ctx.inventory.hosts.includes(o.host)) throw new UsageError(`no Docker host named ${o.host} (configured: ${ctx.inventory.hosts.join(', ')})`);
        const snap = await ctx.inventory.snapshot({ hosts: o.host ? [o.host] : undefined, usage: o.usage });
        const rows = filterRows(snap, o);
        const now = snap.takenAt;
        recordsWarning(io, snap.recordsError);
        for (const h of snap.hostErrors) io.err.write(`warning: host ${h.host}: containers could not be listed (${h.error})\n`);
        if (snap.poolError) io.err.write(`warning: warm-pool list unreadable (${snap.poolError})\n`);
        if (o.json) {
          io.out.write(
            JSON.stringify(
              {
                namespace: snap.namespace,
                takenAt: new Date(now).toISOString(),
                recordsError: snap.recordsError,
                hostErrors: snap.hostErrors,
                sessions: rows.map((r) => rowJson(r, now)),
              },
              null,
              2,
            ) + '\n',
          );
        } else {
          const t = plainTable(['SESSION', 'STATE', 'HOST', 'CONTAINER', 'AGE', 'IDLE', 'EXPIRES IN', 'MEMORY', 'LIMITS', 'METADATA']);
          for (const r of rows) {
            const rec = r.record;
            const live = rec && rec.status !== 'terminated';
            const created = rec?.createdAt ?? r.container?.createdAt.getTime();
            const mem = r.usage ? fmtBytes(r.usage.memoryBytes) + (live ? ` / ${rec!.limits.memoryMb} MiB` : '') : '-';
            t.push([
              r.id ?? '(no id label)',
              r.state,
              r.host ?? '-',
              r.container ? `${r.container.id.slice(0, 12)} ${r.container.state}` : live ? 'missing' : '-',
              created ? fmtDuration(now - created) : '-',
              rec ? fmtDuration(now - rec.lastActiveAt) : '-',
              live ? fmtExpiresIn(rec!.expiresAt - now) : '-',
              mem,
              live ? fmtLimits(rec!.limits) : '-',
              rec ? fmtMeta(rec.metadata) : '-',
            ]);
          }
          if (rows.length) io.out.write(render(t));
          const counts = new Map<string, number>();
          for (const r of rows) counts.set(r.state, (counts.get(r.state) ?? 0) + 1);
          const parts = [...counts].map(([s, n]) => `${n} ${s}`);
          io.out.write(`${rows.length} row(s) in namespace ${snap.namespace}${parts.length ? ': ' + parts.join(', ') : ''}\n`);
        }
        setExit(snap.recordsError || snap.hostErrors.length ? 1 : 0);
      } finally {
        await ctx.close();
      }
    });
}
