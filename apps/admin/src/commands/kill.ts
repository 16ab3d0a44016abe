import { Command, InvalidArgumentError, Option } from 'commander';
import { z } from 'zod';
import { TERMINATION_REASONS, type KillResult, type TerminationReason } from '@sessionbox/core';
import type { GlobalOptions, Io } from '../context';
import { openOps } from '../ops-target';

/** Session ids are UUIDs; anything else is a usage error (exit 2). */
export function sessionIdArg(raw: string): string {
  if (!z.uuid().safeParse(raw).success) throw new InvalidArgumentError('not a session id (a UUID)');
  return raw;
}

interface KillOptions {
  json?: boolean;
  purge?: boolean;
  reason: TerminationReason;
}

const SAY: Record<KillResult['outcome'], string> = {
  terminated: 'terminated',
  already_terminated: 'already terminated',
  not_found: 'not found (nothing to do)',
  containers_only: 'containers removed by label; record not updated',
  failed: 'FAILED',
};

export function killCommand(io: Io, setExit: (code: number) => void): Command {
  return new Command('kill')
    .description('Destroy sessions now: container removed, record ended (a 410 tombstone, or deleted with --purge). Idempotent.')
    .argument('<ids...>', 'session ids', (raw: string, prev: string[] = []) => [...prev, sessionIdArg(raw)])
    .option('--purge', 'also delete the record and all its data at once (no tombstone: clients then get 404, not 410)')
    .addOption(new Option('--reason <reason>', 'termination reason recorded on the session').choices(TERMINATION_REASONS).default('admin_kill'))
    .option('--json', 'print JSON instead of text')
    .addHelpText(
      'after',
      `
Killing a session that is already gone is not an error (exit 0). Any other container labelled
with the session id in this namespace is removed too.

Exit codes: 0 every session is gone, 1 something failed (or Redis is down: containers are still
removed by label), 2 usage.

Example:
  sessionbox-admin kill 3b0c6d2e-5f0e-4a51-9d0e-2a4f1c9e7b11 9f1d2c3b-0a4e-4f5d-8c7b-6a5e4d3c2b1a`,
    )
    .action(async (ids: string[], o: KillOptions, cmd: Command) => {
      const ctx = await openOps(cmd.optsWithGlobals<GlobalOptions>());
      try {
        const results: KillResult[] = [];
        for (const id of [...new Set(ids)]) results.push(await ctx.kill(id, { reason: o.reason, purge: o.purge }));
        if (ctx.redisError) io.err.write(`warning: records could not be read (Redis: ${ctx.redisError}); containers were removed by label only\n`);
        if (o.json) io.out.write(JSON.stringify({ namespace: ctx.namespace, results }, null, 2) + '\n');
        else {
          for (const r of results) {
            const extra = [
              r.containersRemoved ? `${r.containersRemoved} container(s) removed` : '',
              r.purged ? 'record purged' : '',
              r.error && r.outcome === 'failed' ? r.error : '',
            ].filter(Boolean);
            io.out.write(`${r.id}: ${SAY[r.outcome]}${extra.length ? ` (${extra.join(', ')})` : ''}\n`);
          }
        }
        setExit(results.some((r) => r.outcome === 'failed' || r.outcome === 'containers_only') ? 1 : 0);
      } finally {
        await ctx.close();
      }
    });
}
