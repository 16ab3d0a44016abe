import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { JsonClient } from './http-client';
import { docker } from './system';
import { fmtBytes, fmtMs, sleep, summarize, timed, type Summary } from './stats';

/** Sessions under runsc hibernated by a whole-container checkpoint, then woken by `print(x)` (issue 17, exact state). */
export interface CheckpointBatch {
  sessions: number;
  /** From the end of the idle TTL (expiresAt) to `hibernatedAt`: reaper pass, dill save, archive, checkpoint. */
  hibernate: Summary;
  /** The checkpoint on the engine's disk (du of its directory; null when this process cannot read it). */
  checkpointDisk: Summary | null;
  /** The archive kept beside it (files + dill state) for the fallback. */
  archiveDisk: Summary;
  /** Hibernated sessions whose container is running (0: nothing runs, so 0 RAM). */
  running: number;
  /** Wake → first result of `print(x)` on the restored state, per session. */
  wake: Summary;
}

const TTL_S = 10;

/** Bytes of a directory on this machine, or null when unreadable (a remote engine, no root). */
function duBytes(dir: string): number | null {
  try {
    return Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\t')[0]);
  } catch {
    return null;
  }
}

/**
 * `http` talks to a system started with SESSIONBOX_RUNTIME=runsc on an engine with `experimental`:
 * default sessions holding `x = 42` (with the kernel's numpy/pandas/matplotlib loaded) hibernate at
 * a 10 s TTL by checkpoint, then each is woken by `print(x)`.
 */
export async function runCheckpointBatch(
  http: JsonClient,
  o: { sessions: number; namespace: string; archiveDir: string; log: (s: string) => void },
): Promise<CheckpointBatch> {
  const made = await Promise.all(Array.from({ length: o.sessions }, () => http.createSession({ ttlSeconds: TTL_S, onIdle: 'hibernate' })));
  const ids = made.map((s) => s.id);
  try {
    const expiresAt = new Map<string, number>();
    for (const id of ids) {
      await http.run(id, 'x = 42');
      const r = await http.request('GET', `/v1/sessions/${id}`);
      expiresAt.set(id, Date.parse(r.body.expiresAt));
    }
    o.log(`hibernate (runsc): ${ids.length} sessions idle until their ${TTL_S} s TTL checkpoints them`);
    const hibernatedAt = new Map<string, number>();
    const end = Date.now() + 180_000;
    for (const id of ids) {
      for (;;) {
        const r = await http.request('GET', `/v1/sessions/${id}`);
        if (r.body.status === 'hibernated') {
          hibernatedAt.set(id, Date.parse(r.body.hibernatedAt));
          break;
        }
        if (r.status === 410) throw new Error(`session ${id} expired instead of hibernating`);
        if (Date.now() > end) throw new Error(`session ${id} did not hibernate within 180 s`);
        await sleep(200);
      }
    }
    const containers = (await docker.listContainers({ all: true, filters: { label: [`sessionbox.namespace=${o.namespace}`] } })).filter((c) =>
      ids.includes(c.Labels['sessionbox.session-id']),
    );
    if (containers.length !== ids.length) throw new Error(`${containers.length} containers kept for ${ids.length} checkpointed sessions (is the engine's experimental on?)`);
    const root = (await docker.info()).DockerRootDir as string;
    const ckpt = containers.map((c) => duBytes(path.join(root, 'containers', c.Id, 'checkpoints')));
    const dir = path.join(o.archiveDir, o.namespace);
    const files = existsSync(dir) ? readdirSync(dir) : [];
    const archive = ids.map((id) => {
      const f = files.find((n) => n.startsWith(`${id}.`) && n.endsWith('.tar.gz'));
      if (!f) throw new Error(`no archive for hibernated session ${id}`);
      return statSync(path.join(dir, f)).size;
    });
    const wake: number[] = [];
    for (const id of ids) {
      const r = await timed(() => http.run(id, 'print(x)'));
      if (r.value.stdout !== '42\n' || r.value.restored !== true || r.value.notes?.length) throw new Error(`checkpoint wake print(x): restored ${r.value.restored}, notes ${JSON.stringify(r.value.notes)}, stdout ${JSON.stringify(r.value.stdout)}, status ${r.value.status}`);
      wake.push(r.ms);
    }
    return {
      sessions: o.sessions,
      hibernate: summarize(ids.map((id) => hibernatedAt.get(id)! - expiresAt.get(id)!)),
      checkpointDisk: ckpt.every((b) => b !== null) ? summarize(ckpt as number[]) : null,
      archiveDisk: summarize(archive),
      running: containers.filter((c) => c.State === 'running').length,
      wake: summarize(wake),
    };
  } finally {
    await Promise.all(ids.map((id) => http.deleteSession(id)));
  }
}

export function checkpointRows(r: CheckpointBatch) {
  const mib = (b: number) => fmtBytes(b);
  return [
    {
      metric: `runsc, checkpoint: hibernate time p50 (TTL end → hibernated: reaper pass, dill save, archive, checkpoint) / disk per default session p50: checkpoint + archive (${r.sessions} sessions)`,
      ours: `${fmtMs(r.hibernate.p50)} / ${r.checkpointDisk ? mib(r.checkpointDisk.p50) : 'n/a'} + ${mib(r.archiveDisk.p50)}`,
      exec: '–',
      run: '–',
      target: 'RAM 0, disk printed',
      met: r.running === 0,
    },
    {
      metric: `runsc, checkpoint: wake → first result of print(x), p50 / max (${r.wake.n} wakes, exact state)`,
      ours: `${fmtMs(r.wake.p50)} / ${fmtMs(r.wake.max)}`,
      exec: '–',
      run: '–',
      target: '≤ 1.5 s',
      met: r.wake.p50 <= 1500,
    },
  ];
}
