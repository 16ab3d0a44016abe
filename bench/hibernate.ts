import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { JsonClient } from './http-client';
import IORedis from 'ioredis';
import { REDIS_URL, docker } from './system';
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
  /** Redis bytes of a hibernated default session: its keys (`MEMORY USAGE`) plus its members in the shared indexes. */
  redisDefault: Summary;
  /** Wake → first result of `print(x)` on the restored state, per session. */
  wake: Summary;
}

/** What a hibernated session keeps in Redis: every key named by its id, and its member in every sorted set or set that lists it. */
async function redisBytesOf(redis: IORedis, namespace: string, id: string): Promise<number> {
  let bytes = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `sb:${namespace}:*`, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      if (key.includes(id)) {
        bytes += (await redis.memory('USAGE', key)) ?? 0;
        continue;
      }
      const type = await redis.type(key);
      const member = type === 'zset' ? (await redis.zscore(key, id)) !== null : type === 'set' ? (await redis.sismember(key, id)) === 1 : false;
      // A member costs about its length plus a score and the structure's per-entry overhead.
      if (member) bytes += id.length + 32;
    }
  } while (cursor !== '0');
  return bytes;
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
    const redis = new IORedis(REDIS_URL);
    let redisDefault: Summary;
    try {
      redisDefault = summarize(await Promise.all(plain.map((s) => redisBytesOf(redis, o.namespace, s.id))));
    } finally {
      redis.disconnect();
    }
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
      redisDefault,
      wake: summarize(wake),
    };
  } finally {
    await Promise.all(all.map((id) => http.deleteSession(id)));
  }
}

export function hibernateRows(r: HibernateResult) {
  const rows: { metric: string; ours: string; exec: string; run: string; target: string; met: boolean | null }[] = [
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
  // Held: what 5,000 hibernated default sessions take, from the per-session costs measured above (not a run of 5,000).
  const held = 5000;
  rows.push({
    metric: `Hibernated default session in Redis (its keys + index members) p50; ${held.toLocaleString('en')} of them, disk + Redis (arithmetic from these p50s)`,
    ours: `${kib(r.cold.redisDefault.p50)}; ${fmtBytes(held * r.cold.diskDefault.p50)} + ${fmtBytes(held * r.cold.redisDefault.p50)}`,
    exec: '–',
    run: '–',
    target: '≥ 5,000 held (not run)',
    met: null,
  });
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
