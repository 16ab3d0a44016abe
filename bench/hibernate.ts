import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { JsonClient } from './http-client';
import { docker } from './system';
import { fmtBytes, fmtMs, sleep, summarize, timed, type Summary } from './stats';

const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;

/** One batch of sessions hibernated at a 10 s idle TTL, then woken by `print(x)` (issue 17). */
export interface HibernateBatch {
  sessions: number;
  /** Archive on disk (files + saved state) of a default session holding `x = 42`. */
  diskDefault: Summary;
  /** The same with a 10,000-row DataFrame and numpy/pandas imported. */
  diskDataFrame: Summary;
  /** Containers of the hibernated sessions that still exist (0: nothing runs, so 0 RAM). */
  containersWhileHibernated: number;
  ramBytes: number;
  /** Wake → first result of `print(x)` on the restored state, per session. */
  wake: Summary;
}

export interface HibernateResult {
  cold: HibernateBatch;
  warm?: HibernateBatch & { poolSize: number };
}

const TTL_S = 10;
const DATAFRAME = "import numpy as np, pandas as pd\nx = 42\ndf = pd.DataFrame({'a': np.arange(10_000), 'b': np.random.rand(10_000)})";

export async function runHibernateBatch(
  http: JsonClient,
  o: { sessions: number; namespace: string; archiveDir: string; log: (s: string) => void },
): Promise<HibernateBatch> {
  const plain = await Promise.all(Array.from({ length: o.sessions }, () => http.createSession({ ttlSeconds: TTL_S, onIdle: 'hibernate' })));
  const framed = await Promise.all(Array.from({ length: o.sessions }, () => http.createSession({ ttlSeconds: TTL_S, onIdle: 'hibernate' })));
  const all = [...plain, ...framed].map((s) => s.id);
  try {
    for (const s of plain) await http.run(s.id, 'x = 42');
    for (const s of framed) await http.run(s.id, DATAFRAME);
    o.log(`hibernate: ${all.length} sessions idle until their ${TTL_S} s TTL hibernates them`);
    const end = Date.now() + 120_000;
    for (const id of all) {
      for (;;) {
        const r = await http.request('GET', `/v1/sessions/${id}`);
        if (r.body.status === 'hibernated') break;
        if (r.status === 410) throw new Error(`session ${id} expired instead of hibernating (does SESSIONBOX_IMAGE have the hibernate op?)`);
        if (Date.now() > end) throw new Error(`session ${id} did not hibernate within 120 s`);
        await sleep(200);
      }
    }
    const dir = path.join(o.archiveDir, o.namespace);
    const files = existsSync(dir) ? readdirSync(dir) : [];
    const size = (id: string) => {
      const f = files.find((n) => n.startsWith(`${id}.`) && n.endsWith('.tar.gz'));
      if (!f) throw new Error(`no archive for hibernated session ${id}`);
      return statSync(path.join(dir, f)).size;
    };
    // Sized before the wakes: a woken session's archive is deleted at once.
    const diskDefault = summarize(plain.map((s) => size(s.id)));
    const diskDataFrame = summarize(framed.map((s) => size(s.id)));
    const containers = await docker.listContainers({ all: true, filters: { label: [`sessionbox.namespace=${o.namespace}`] } });
    const left = containers.filter((c) => all.includes(c.Labels['sessionbox.session-id']));
    let ramBytes = 0;
    for (const c of left) {
      const st = (await docker.getContainer(c.Id).stats({ stream: false })) as { memory_stats?: { usage?: number } };
      ramBytes += st.memory_stats?.usage ?? 0;
    }
    const wake: number[] = [];
    for (const id of plain.map((s) => s.id)) {
      const r = await timed(() => http.run(id, 'print(x)'));
      if (r.value.stdout !== '42\n' || r.value.restored !== true) throw new Error(`wake print(x): ${JSON.stringify(r.value).slice(0, 400)}`);
      wake.push(r.ms);
    }
    return {
      sessions: o.sessions,
      diskDefault,
      diskDataFrame,
      containersWhileHibernated: left.length,
      ramBytes,
      wake: summarize(wake),
    };
  } finally {
    await Promise.all(all.map((id) => http.deleteSession(id)));
  }
}

export function hibernateRows(r: HibernateResult) {
  const rows = [
    {
      metric: `Hibernated session: RAM (containers left) / disk p50, default session (x = 42) / with a 10k-row DataFrame (${r.cold.sessions} each)`,
      ours: `${fmtBytes(r.cold.ramBytes)} (${r.cold.containersWhileHibernated}) / ${kib(r.cold.diskDefault.p50)} / ${kib(r.cold.diskDataFrame.p50)}`,
      exec: '–',
      run: '–',
      target: 'RAM 0',
      met: r.cold.ramBytes === 0 && r.cold.containersWhileHibernated === 0,
    },
    {
      metric: `Wake → first result of print(x), no pool: p50 / max (${r.cold.wake.n} wakes)`,
      ours: `${fmtMs(r.cold.wake.p50)} / ${fmtMs(r.cold.wake.max)}`,
      exec: '–',
      run: '–',
      target: '≤ 1.5 s',
      met: r.cold.wake.p50 <= 1500,
    },
  ];
  if (r.warm) {
    rows.push({
      metric: `Wake → first result of print(x), warm pool of ${r.warm.poolSize} running (each wake claims a pool container): p50 / max (${r.warm.wake.n} wakes)`,
      ours: `${fmtMs(r.warm.wake.p50)} / ${fmtMs(r.warm.wake.max)}`,
      exec: '–',
      run: '–',
      target: '≤ 300 ms',
      met: r.warm.wake.p50 <= 300,
    });
  }
  return rows;
}
