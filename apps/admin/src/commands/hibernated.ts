import { Command } from 'commander';
import type { SessionRecord } from '@sessionbox/core';

const ADMIN = { owner: '*' };
import { openAdmin, type GlobalOptions, type Io } from '../context';
import { fmtBytes, iso, parseDuration, plainTable, render } from '../format';
import { sessionIdArg } from './kill';

interface HibernatedOptions {
  json?: boolean;
  purge?: boolean;
  olderThan?: number;
}

/** One hibernated session as `hibernated --json` prints it. */
export interface HibernatedRow {
  id: string;
  owner: string;
  hibernatedAt: string | null;
  wakeUntil: string | null;
  /** Its archive on disk (files plus saved state); null when the archive is missing. */
  sizeBytes: number | null;
  purged?: boolean;
  error?: string;
}

export function hibernatedCommand(io: Io, setExit: (code: number) => void): Command {
  return new Command('hibernated')
    .description('List hibernated sessions (no container; state and files saved on disk) with their size; --purge ends them for good.')
    .argument('[ids...]', 'only these session ids', (raw: string, prev: string[] = []) => [...prev, sessionIdArg(raw)])
    .option('--older-than <duration>', 'only sessions hibernated at least this long ago (e.g. 90s, 2h, 3d)', parseDuration)
    .option('--purge', 'end the listed sessions now: saved state and files deleted, record ended (clients then get 410)')
    .option('--json', 'print JSON instead of text')
    .addHelpText(
      'after',
      `
Exit codes: 0 ok, 1 a purge failed (or Redis is down), 2 usage.

Examples:
  sessionbox-admin hibernated
  sessionbox-admin hibernated --older-than 3d --purge`,
    )
    .action(async (ids: string[] = [], o: HibernatedOptions, cmd: Command) => {
      const ctx = await openAdmin(cmd.optsWithGlobals<GlobalOptions>());
      try {
        if (ctx.redisError) {
          io.err.write(`error: records could not be read (Redis: ${ctx.redisError})\n`);
          setExit(1);
          return;
        }
        const now = Date.now();
        const wanted = ids.length ? new Set(ids) : null;
        const { sessions } = await ctx.core.sessions.list(ADMIN, { status: 'hibernated' });
        const picked = sessions.filter(
          (r: SessionRecord) => (!wanted || wanted.has(r.id)) && (o.olderThan === undefined || now - (r.hibernatedAt ?? now) >= o.olderThan),
        );
        const rows: HibernatedRow[] = [];
        for (const rec of picked) {
          const info = await ctx.core.files!.archives.archiveInfo(rec.id);
          const row: HibernatedRow = {
            id: rec.id,
            owner: rec.owner,
            hibernatedAt: rec.hibernatedAt ? new Date(rec.hibernatedAt).toISOString() : null,
            wakeUntil: rec.wakeUntil ? new Date(rec.wakeUntil).toISOString() : null,
            sizeBytes: info?.size ?? null,
          };
          if (o.purge) {
            try {
              // The files hook deletes the saved state of a hibernated session as it ends.
              await ctx.core.sessions.terminate(rec, 'admin_kill');
              row.purged = true;
            } catch (err) {
              row.purged = false;
              row.error = err instanceof Error ? err.message : String(err);
            }
          }
          rows.push(row);
        }
        const totalBytes = rows.reduce((n, r) => n + (r.sizeBytes ?? 0), 0);
        if (o.json) io.out.write(JSON.stringify({ namespace: ctx.config.namespace, count: rows.length, totalBytes, sessions: rows }, null, 2) + '\n');
        else {
          const t = plainTable(['SESSION', 'OWNER', 'HIBERNATED', 'WAKE UNTIL', 'SIZE', ...(o.purge ? ['PURGED'] : [])]);
          for (const r of rows) {
            t.push([r.id, r.owner, iso(r.hibernatedAt ? Date.parse(r.hibernatedAt) : null), iso(r.wakeUntil ? Date.parse(r.wakeUntil) : null), fmtBytes(r.sizeBytes), ...(o.purge ? [r.purged ? 'yes' : `FAILED: ${r.error}`] : [])]);
          }
          io.out.write(render(t));
          io.out.write(`${rows.length} hibernated session(s), ${fmtBytes(totalBytes)} on disk${o.purge ? ' (purged)' : ''}\n`);
        }
        setExit(rows.some((r) => r.purged === false) ? 1 : 0);
      } finally {
        await ctx.close();
      }
    });
}
