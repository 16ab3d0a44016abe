import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import IORedis from 'ioredis';
import type { JsonClient } from './http-client';
import { REDIS_URL, docker } from './system';
import { fmtBytes, fmtMs, sleep, summarize, timed, type Summary } from './stats';

/**
 * `--only held` (issue 17: "sessions held ≥ 5,000, with ≤ 300 live"): `--held N` sessions are made,
 * each runs `x = <its number>`, and each hibernates at a 10 s idle TTL, while at most a few dozen are
 * live at once. Once all are hibernated, it measures what they hold (RAM, disk, Redis), wakes a
 * sample and checks each one's `x`, then ends them all. Not part of the default run (it takes about
 * half a second of the engine's time per session).
 */
export interface HeldResult {
  sessions: number;
  hibernated: number;
  /** Most sessions live at once while they were being made (sampled every 2 s). */
  maxLive: number;
  /** Containers of the namespace running once all were hibernated. */
  running: number;
  diskBytes: number;
  redisBytes: number;
  makeSeconds: number;
  wake: Summary;
}

const TTL_S = 10;

export async function benchHeld(
  http: JsonClient,
  o: { sessions: number; concurrency: number; namespace: string; archiveDir: string; log: (s: string) => void },
): Promise<HeldResult> {
  const redis = new IORedis(REDIS_URL);
  const ids: string[] = new Array(o.sessions);
  try {
    const usedBefore = await usedMemory(redis);
    const t0 = performance.now();
    let next = 0;
    let maxLive = 0;
    let making = true;
    const sampler = (async () => {
      while (making) {
        const hosts = await http.request('GET', '/v1/admin/hosts');
        maxLive = Math.max(maxLive, ...(hosts.body.hosts as { liveSessions: number }[]).map((h) => h.liveSessions));
        await sleep(2000);
      }
    })();
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        for (let i = next++; i < o.sessions; i = next++) {
          const s = await http.createSession({ ttlSeconds: TTL_S, onIdle: 'hibernate' });
          ids[i] = s.id;
          const r = await http.run(s.id, `x = ${i}`);
          if (r.status !== 'succeeded') throw new Error(`held: x = ${i}: ${JSON.stringify(r).slice(0, 300)}`);
          if (i % 500 === 499) o.log(`held: ${i + 1} of ${o.sessions} made`);
        }
      }),
    );
    o.log(`held: all ${o.sessions} made; waiting for the last ones to hibernate`);
    const end = Date.now() + 300_000;
    for (;;) {
      const hosts = await http.request('GET', '/v1/admin/hosts');
      const live = (hosts.body.hosts as { liveSessions: number }[]).reduce((a, h) => a + h.liveSessions, 0);
      maxLive = Math.max(maxLive, live);
      if (live === 0) break;
      if (Date.now() > end) throw new Error(`held: ${live} sessions still live 300 s after the last was made`);
      await sleep(1000);
    }
    making = false;
    await sampler;
    const makeSeconds = (performance.now() - t0) / 1000;

    let hibernated = 0;
    for (let i = 0; i < ids.length; i += 200) {
      const got = await Promise.all(ids.slice(i, i + 200).map((id) => http.request('GET', `/v1/sessions/${id}`)));
      hibernated += got.filter((r) => r.body.status === 'hibernated').length;
    }
    const running = (await docker.listContainers({ filters: { label: [`sessionbox.namespace=${o.namespace}`] } })).length;
    const dir = path.join(o.archiveDir, o.namespace);
    const diskBytes = existsSync(dir) ? Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0]) : 0;
    const redisBytes = (await usedMemory(redis)) - usedBefore;

    const wake: number[] = [];
    for (let k = 0; k < 10; k++) {
      const i = Math.floor((k + 0.5) * (o.sessions / 10));
      const r = await timed(() => http.run(ids[i], 'print(x)'));
      if (r.value.stdout !== `${i}\n` || r.value.restored !== true) throw new Error(`held: wake ${i}: ${JSON.stringify(r.value).slice(0, 300)}`);
      wake.push(r.ms);
    }
    return { sessions: o.sessions, hibernated, maxLive, running, diskBytes, redisBytes, makeSeconds, wake: summarize(wake) };
  } finally {
    o.log(`held: ending ${ids.filter(Boolean).length} sessions`);
    const made = ids.filter(Boolean);
    for (let i = 0; i < made.length; i += 32) await Promise.all(made.slice(i, i + 32).map((id) => http.deleteSession(id).catch(() => undefined)));
    redis.disconnect();
  }
}

async function usedMemory(redis: IORedis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? NaN);
}

export function heldRows(r: HeldResult) {
  return [
    {
      metric: `Sessions held: ${r.sessions.toLocaleString('en')} made, each hibernated at a 10 s idle TTL (made in ${r.makeSeconds.toFixed(0)} s); hibernated / most live at once / containers running after`,
      ours: `${r.hibernated.toLocaleString('en')} / ${r.maxLive} / ${r.running}`,
      exec: '–',
      run: '–',
      target: '≥ 5,000 held, ≤ 300 live',
      met: r.hibernated >= 5000 && r.maxLive <= 300 && r.running === 0,
    },
    {
      metric: `Held sessions: disk / Redis (used_memory growth) in all, and per session; wake → print(x) of 10 of them p50 / max`,
      ours: `${fmtBytes(r.diskBytes)} / ${fmtBytes(r.redisBytes)}; ${(r.diskBytes / r.sessions).toFixed(0)} B / ${(r.redisBytes / r.sessions / 1024).toFixed(1)} KiB; ${fmtMs(r.wake.p50)} / ${fmtMs(r.wake.max)}`,
      exec: '–',
      run: '–',
      target: '–',
      met: null as boolean | null,
    },
  ];
}
