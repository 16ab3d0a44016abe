/**
 * `npm run bench`: sessionbox on the real engine against the usual designs, in one run.
 * Prints a table (and markdown) and writes bench/results/latest.json. See --help.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import Table from 'cli-table3';
import IORedis from 'ioredis';
import { Queue, Worker } from 'bullmq';
import { DockerRuntime, KernelChannel, Keys } from '@sessionbox/core';
import { fairShareRow, runFairShare, type FairShareResult } from './fair-share';
import { hibernateRows, runHibernateBatch, type HibernateResult } from './hibernate';
import { checkpointRows, runCheckpointBatch, type CheckpointBatch } from './hibernate-checkpoint';
import { FLOOR_VARIANTS, PLOT_SCRIPT, runBaselines, type BaselineResults } from './baselines';
import { benchDifySandbox, difyReportLines, type DifyBenchResult } from './dify-sandbox';
import { benchBurst, burstReportLines, type BurstResult } from './burst';
import { benchHeld, heldRows, type HeldResult } from './held';
import { summarizeProfiles, type ProfileSummary } from './cpu-profile';
import { JsonClient } from './http-client';
import { jupyterReport, runJupyterBench, type JupyterResults } from './jupyter';
import { containerMemory, containerPids, cpuSnapshot, machineInfo, meminfo, pidsMatching, shimRss, type MachineInfo } from './machine';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fmtBytes, fmtMs, round, sleep, speedup, summarize, timed, type Summary } from './stats';
import { REDIS_URL, ROOT, cleanupNamespace, docker, startBenchSystem, type BenchSystem, type Mode } from './system';

const SECTIONS = ['baselines', 'cold', 'warm', 'dify', 'burst', 'print', 'plot', 'jupyter', 'profile', 'ttl', 'sustained', 'memory', 'floor', 'fairshare', 'hibernate', 'held'] as const;
/** Only when named in --only: `held` makes thousands of sessions (most of an hour at 5,000). */
const OPT_IN: readonly string[] = ['held'];
type Section = (typeof SECTIONS)[number];

const PLOT_CODE = 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3, 4], [1, 4, 9, 16])\nplt.show()';

const program = new Command()
  .name('bench')
  .description('Benchmarks sessionbox (api + worker on this machine) against docker exec / docker run per call.')
  .option('--quick', 'small sample counts (about 2 minutes)', false)
  .option('--mode <mode>', 'processes (api and worker as two processes, like npm start) or in-process', 'processes')
  .option('--pool <n>', 'warm pool size for the warm phase (npm start: 4)', '4')
  .option('--lazy-pool <n>', 'lazy warm containers on top, imports on first use (npm start: 16)', '16')
  .option('--sessions <n>', 'sessions for the sustained and idle-memory phases')
  .option('--seconds <n>', 'length of the sustained phase')
  .option('--held <n>', 'sessions made and hibernated by the held section (--only held)', '5000')
  .option('--only <sections>', `comma-separated subset of: ${SECTIONS.join(',')}`)
  .option('--cpu-prof', 'write V8 CPU profiles of api and worker (processes mode) and summarize them', false)
  .option('--out <file>', 'JSON result file', path.join(ROOT, 'bench/results/latest.json'))
  .option('--image <image>', 'session image', process.env.SESSIONBOX_IMAGE ?? 'sessionbox/python-runner:latest');

interface Results {
  startedAt: string;
  finishedAt?: string;
  durationS?: number;
  options: Record<string, unknown>;
  machine: MachineInfo;
  loadAvgEnd?: number[];
  baselines?: BaselineResults;
  cold?: { create: Summary; firstResult: Summary };
  warm?: { create: Summary; firstResult: Summary; claimed: number; missed: number; refillPerSecond: number };
  print?: Summary & { breakdown: Record<string, number> };
  plot?: Summary;
  jupyter?: JupyterResults;
  profile?: Record<string, Summary>;
  ttl?: { ttlSeconds: number; goneAfterExpiry: Summary; reaperIntervalMs: number };
  sustained?: {
    sessions: number;
    seconds: number;
    executions: number;
    perSecond: number;
    errors: number;
    latency: Summary;
    /** CPU ms per execution by process group, and the machine's busy CPU (other work on the machine included). */
    cpuMsPerExec: Record<string, number>;
    machineBusyShare: number;
  };
  memory?: {
    sessions: number;
    workingSet: Summary;
    rss: Summary;
    shimRss: Summary;
    perProcess: { cmd: string; rssMiB: number; anonMiB: number }[];
    memAvailableBytes: number;
    fitEstimate: number;
  };
  floor?: { name: string; workingSetBytes: number; rssBytes: number }[];
  dify?: DifyBenchResult;
  fairShare?: FairShareResult;
  hibernate?: HibernateResult;
  held?: HeldResult;
  /** The same under runsc, hibernated by whole-container checkpoints (when the engine can). */
  hibernateCheckpoint?: CheckpointBatch;
  burst?: BurstResult;
  cpuProfiles?: ProfileSummary[];
  errors: string[];
}

const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

/** The runsc row of the hibernate section: its own api + worker under runsc (null when the engine has no runsc or no experimental). */
async function benchCheckpoints(p: { mode: Mode; namespace: string; sessions: number; logDir: string }): Promise<CheckpointBatch | null> {
  const info = await docker.info();
  if (!info.Runtimes?.runsc || info.ExperimentalBuild !== true) {
    log('hibernate: no runsc row (runsc is not registered, or the engine runs without "experimental")');
    return null;
  }
  const ns = `${p.namespace}-gv`;
  log(`hibernate: ${p.sessions} sessions under runsc (x = 42) checkpointed at a 10 s idle TTL, then woken with print(x)`);
  const prev = process.env.SESSIONBOX_RUNTIME;
  process.env.SESSIONBOX_RUNTIME = 'runsc';
  let gv: BenchSystem;
  try {
    gv = await startBenchSystem({ mode: p.mode, namespace: ns, poolSize: 0, logDir: p.logDir });
  } finally {
    if (prev === undefined) delete process.env.SESSIONBOX_RUNTIME;
    else process.env.SESSIONBOX_RUNTIME = prev;
  }
  const client = new JsonClient(gv.url);
  try {
    return await runCheckpointBatch(client, { sessions: p.sessions, namespace: ns, archiveDir: path.join(tmpdir(), `sessionbox-bench-archives-${ns}`), log });
  } finally {
    client.close();
    await gv.stop();
    await cleanupNamespace(ns).catch(() => undefined);
  }
}

async function main() {
  const o = program.parse().opts<{
    quick: boolean;
    mode: Mode;
    pool: string;
    lazyPool: string;
    sessions?: string;
    seconds?: string;
    held: string;
    only?: string;
    cpuProf: boolean;
    out: string;
    image: string;
  }>();
  if (o.mode !== 'processes' && o.mode !== 'in-process') throw new Error('--mode is processes or in-process');
  // One image for everything measured: the baselines take it from here, the API and worker (which
  // inherit this environment) from SESSIONBOX_IMAGE. Without this, --image changed only the baselines.
  process.env.SESSIONBOX_IMAGE = o.image;
  const q = o.quick;
  const n = {
    cold: q ? 4 : 12,
    warmBursts: q ? 2 : 5,
    print: q ? 100 : 400,
    plot: q ? 15 : 60,
    profile: q ? 100 : 300,
    ttl: q ? 3 : 6,
    hibernate: q ? 4 : 10,
    sessions: Number(o.sessions ?? (q ? 10 : 50)),
    seconds: Number(o.seconds ?? (q ? 8 : 20)),
    baselines: q
      ? { execPrint: 10, execPlot: 3, runPrint: 3, runPlot: 2, sustainedSeconds: 4 }
      : { execPrint: 40, execPlot: 10, runPrint: 12, runPlot: 6, sustainedSeconds: 10 },
  };
  const poolSize = Number(o.pool);
  const lazyPoolSize = Number(o.lazyPool);
  const only = new Set<Section>((o.only ? o.only.split(',') : SECTIONS.filter((s) => !OPT_IN.includes(s))) as Section[]);
  for (const s of only) if (!SECTIONS.includes(s)) throw new Error(`unknown section ${s}`);
  const want = (s: Section) => only.has(s);

  const namespace = `bench-${Math.random().toString(36).slice(2, 8)}`;
  const resultsDir = path.dirname(path.resolve(o.out));
  mkdirSync(resultsDir, { recursive: true });
  const profDir = path.join(resultsDir, `profiles-${namespace}`);
  if (o.cpuProf) process.env.BENCH_NODE_OPTIONS = `--cpu-prof --cpu-prof-dir=${profDir}`;

  const started = Date.now();
  const res: Results = {
    startedAt: new Date(started).toISOString(),
    options: { quick: q, mode: o.mode, poolSize, lazyPoolSize, counts: n, sections: [...only], namespace },
    machine: await machineInfo(),
    errors: [],
  };
  log(`machine: ${res.machine.cpus} CPU (${res.machine.cpuModel}), ${fmtBytes(res.machine.memTotalBytes)} RAM, kernel ${res.machine.kernel}, docker ${res.machine.docker}, load ${res.machine.loadAvg.join(' ')}`);
  await docker.getImage(o.image).inspect().catch(() => {
    throw new Error(`image ${o.image} is missing: run bash scripts/ensure-infra.sh first`);
  });

  let sys: BenchSystem | null = null;
  let client: JsonClient | null = null;
  const redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const keys = new Keys(namespace);
  // One cleanup, whoever asks first (the end of the run or Ctrl-C); both wait for the same one.
  let cleaning: Promise<void> | null = null;
  const cleanup = () =>
    (cleaning ??= (async () => {
      client?.close();
      await sys?.stop().catch((err) => log(`stop: ${(err as Error).message}`));
      const removed = await cleanupNamespace(namespace).catch(() => -1);
      log(`cleanup: ${removed} leftover container(s) removed`);
      redis.disconnect();
    })());
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    log('interrupted: cleaning up');
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    // ---- phase 1: usual designs, and sessionbox without a pool -------------------------------
    if (want('baselines')) {
      res.baselines = await runBaselines({ image: o.image, tag: namespace, n: n.baselines, log });
    }
    const needSystem = [...only].some((s) => s !== 'baselines' && s !== 'floor');
    if (needSystem) {
      log(`starting api + worker (${o.mode}, namespace ${namespace}, pool 0)`);
      sys = await startBenchSystem({ mode: o.mode, namespace, poolSize: 0, logDir: resultsDir });
      client = new JsonClient(sys.url);
    }
    const http = () => client!;

    if (want('cold')) {
      log(`cold create ×${n.cold} (no pool): create, then the first print(1) (waits for the kernel's imports)`);
      const create: number[] = [];
      const first: number[] = [];
      for (let i = 0; i < n.cold; i++) {
        const c = await timed(() => http().createSession());
        const r = await timed(() => http().run(c.value.id, 'print(1)'));
        if (r.value.stdout !== '1\n') throw new Error(`cold first run: ${JSON.stringify(r.value)}`);
        create.push(c.ms);
        first.push(c.ms + r.ms);
        await http().deleteSession(c.value.id);
      }
      res.cold = { create: summarize(create), firstResult: summarize(first) };
    }

    const archiveDir = path.join(tmpdir(), `sessionbox-bench-archives-${namespace}`);
    if (want('hibernate')) {
      log(`hibernate: ${n.hibernate} + ${n.hibernate} sessions (x = 42; a DataFrame) at a 10 s idle TTL, then wake each with print(x) (no pool)`);
      res.hibernate = { cold: await runHibernateBatch(http(), { sessions: n.hibernate, namespace, archiveDir, log }) };
      res.hibernateCheckpoint = (await benchCheckpoints({ mode: o.mode, namespace, sessions: n.hibernate, logDir: resultsDir })) ?? undefined;
    }
    if (want('held')) {
      log(`held: ${o.held} sessions made 8 at a time, each hibernated at a 10 s idle TTL (no pool)`);
      res.held = await benchHeld(http(), { sessions: Number(o.held), concurrency: 8, namespace, archiveDir, log });
    }

    // ---- phase 2: with the warm pool ---------------------------------------------------------
    if (sys && poolSize > 0) {
      log(`restarting the worker with a warm pool of ${poolSize} (+ ${lazyPoolSize} lazy)`);
      await sys.restartWorker(poolSize, lazyPoolSize);
    }
    const poolLen = async () => (await redis.llen(keys.pool('local'))) + (await redis.llen(keys.pool('local', 'lazy')));
    const waitPoolFull = async (timeoutMs = 180_000) => {
      const end = Date.now() + timeoutMs;
      while ((await poolLen()) < poolSize + lazyPoolSize) {
        if (Date.now() > end) throw new Error(`the warm pool did not fill to ${poolSize} + ${lazyPoolSize} lazy within ${timeoutMs} ms`);
        await sleep(50);
      }
    };

    if (want('warm') && poolSize > 0) {
      log(`warm create: ${n.warmBursts} bursts of ${poolSize} claims (each burst starts from a full pool)`);
      const create: number[] = [];
      const first: number[] = [];
      let missed = 0;
      const fillStart = Date.now();
      await waitPoolFull();
      const refill: number[] = [];
      for (let b = 0; b < n.warmBursts; b++) {
        if (b > 0) {
          const t0 = Date.now();
          await waitPoolFull();
          refill.push((Date.now() - t0) / 1000);
        }
        const listed = new Set((await redis.lrange(keys.pool('local'), 0, -1)).map((r) => JSON.parse(r).sessionId as string));
        const made: { id: string; ms: number }[] = [];
        for (let i = 0; i < poolSize; i++) {
          const c = await timed(() => http().createSession());
          made.push({ id: c.value.id, ms: c.ms });
        }
        for (const m of made) {
          const r = await timed(() => http().run(m.id, 'print(1)'));
          if (!listed.has(m.id)) {
            missed++;
          } else {
            create.push(m.ms);
            first.push(m.ms + r.ms);
          }
        }
        await Promise.all(made.map((m) => http().deleteSession(m.id)));
      }
      const refillPerSecond = refill.length ? poolSize / (refill.reduce((a, b) => a + b, 0) / refill.length) : poolSize / ((Date.now() - fillStart) / 1000);
      res.warm = { create: summarize(create), firstResult: summarize(first), claimed: create.length, missed, refillPerSecond: round(refillPerSecond, 2) };
      await waitPoolFull();
    }

    if (want('hibernate') && poolSize > 0 && res.hibernate) {
      await waitPoolFull();
      log(`hibernate: the same with a warm pool of ${poolSize} running`);
      res.hibernate.warm = { poolSize, ...(await runHibernateBatch(http(), { sessions: n.hibernate, namespace, archiveDir, log })) };
    }

    if (want('dify')) {
      log(`dify-sandbox /v1/sandbox/run ×${q ? 10 : 30} each: a trivial python3 main, a pandas main`);
      res.dify = await benchDifySandbox(http(), q ? 10 : 30, () => waitPoolFull());
    }
    if (want('burst')) res.burst = await benchBurst({ http: http(), image: o.image, tag: namespace, sizes: [4, 10, 20], waitPool: () => waitPoolFull(), filling: async () => (await redis.zcard(keys.poolFilling('local'))) + (await redis.zcard(keys.poolFilling('local', 'lazy'))),
        full: async () => (await poolLen()) >= poolSize + lazyPoolSize,
        poolMemory: async () => {
          const mib = async (tier: 'eager' | 'lazy') =>
            Promise.all(
              (await redis.lrange(keys.pool('local', tier), 0, -1)).map(async (raw) => (await containerMemory(JSON.parse(raw).containerId)).workingSetBytes / 2 ** 20),
            );
          return { eager: await mib('eager'), lazy: await mib('lazy') };
        },
        log,
      });

    let probe: { id: string; containerId: string } | null = null;
    const probeSession = async () => {
      if (probe) return probe;
      const s = await http().createSession();
      await http().run(s.id, 'print(1)');
      const containerId = (await redis.hget(keys.session(s.id), 'containerId'))!;
      return (probe = { id: s.id, containerId });
    };

    if (want('print')) {
      const s = await probeSession();
      log(`print(1) with ?wait=true ×${n.print} on one session`);
      for (let i = 0; i < 30; i++) await http().run(s.id, 'print(1)');
      const xs: number[] = [];
      const parts = { beforeQueue: 0, queueToStart: 0, run: 0, afterFinish: 0 };
      for (let i = 0; i < n.print; i++) {
        const sent = Date.now();
        const r = await timed(() => http().run(s.id, 'print(1)'));
        const got = Date.now();
        if (r.value.stdout !== '1\n' || r.value.status !== 'succeeded') throw new Error(`print(1): ${JSON.stringify(r.value)}`);
        xs.push(r.ms);
        const qa = Date.parse(r.value.queuedAt);
        const sa = Date.parse(r.value.startedAt);
        const fa = Date.parse(r.value.finishedAt);
        parts.beforeQueue += qa - sent;
        parts.queueToStart += sa - qa;
        parts.run += fa - sa;
        parts.afterFinish += got - fa;
      }
      const breakdown = Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, round(v / n.print, 2)]));
      res.print = { ...summarize(xs), breakdown };
    }

    if (want('plot')) {
      const s = await probeSession();
      log(`matplotlib line plot ×${n.plot}`);
      for (let i = 0; i < 3; i++) await http().run(s.id, PLOT_CODE);
      const xs: number[] = [];
      for (let i = 0; i < n.plot; i++) {
        const r = await timed(() => http().run(s.id, PLOT_CODE));
        if (r.value.status !== 'succeeded' || r.value.figures.length !== 1) throw new Error(`plot: ${JSON.stringify(r.value).slice(0, 500)}`);
        xs.push(r.ms);
      }
      res.plot = summarize(xs);
    }

    if (want('jupyter')) res.jupyter = await runJupyterBench({ ourUrl: sys!.url, n: { print: q ? 30 : 100, plot: q ? 10 : 30 }, log });

    if (want('profile')) {
      const s = await probeSession();
      log(`profile: the pieces of a round trip, each on its own (×${n.profile})`);
      const loop = async (count: number, fn: (i: number) => Promise<unknown>) => {
        for (let i = 0; i < 20; i++) await fn(i);
        const xs: number[] = [];
        for (let i = 0; i < count; i++) xs.push((await timed(() => fn(i))).ms);
        return summarize(xs);
      };
      const profile: Record<string, Summary> = {};
      profile['Redis PING'] = await loop(n.profile, () => redis.ping());
      profile['HTTP + express (404 route, no Redis)'] = await loop(n.profile, () => http().request('GET', '/v1/bench-no-such-route'));
      profile['HTTP GET session (HGETALL + touch)'] = await loop(n.profile, () => http().request('GET', `/v1/sessions/${s.id}`));
      // BullMQ alone: add -> the processor is called, on a probe queue of this namespace.
      const conn = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
      const wconn = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
      const waiters = new Map<string, () => void>();
      const pq = new Queue('bench-probe', { connection: conn, prefix: keys.queuePrefix(), defaultJobOptions: { removeOnComplete: true } });
      const pw = new Worker('bench-probe', async (job) => waiters.get(job.id!)?.(), { connection: wconn, prefix: keys.queuePrefix(), concurrency: 8 });
      await pw.waitUntilReady();
      profile['BullMQ add → processor called'] = await loop(n.profile, async (i) => {
        const id = `p${i}-${Math.random()}`;
        const got = new Promise<void>((r) => waiters.set(id, r));
        await pq.add('p', {}, { jobId: id });
        await got;
        waiters.delete(id);
      });
      await pw.close();
      await pq.close();
      conn.disconnect();
      wconn.disconnect();
      // The container's supervisor, straight over an attached stream (what the worker holds open).
      const rt = new DockerRuntime({ hostName: 'local', endpoint: 'unix:///var/run/docker.sock' });
      const attachMs = await timed(() => rt.attach(s.containerId));
      const ch = new KernelChannel(attachMs.value);
      profile['docker attach (once per container and worker)'] = summarize([attachMs.ms]);
      profile['attached stream: ping'] = await loop(n.profile, (i) =>
        ch.request({ op: 'ping', id: `bp${i}-${Math.random()}` }, { isLast: (e) => e.ev === 'pong', timeoutMs: 10_000 }),
      );
      profile['attached stream: exec print(1)'] = await loop(n.profile, (i) =>
        ch.request({ op: 'exec', id: `be${i}-${Math.random()}`, code: 'print(1)', timeoutMs: 10_000 }, { isLast: (e) => e.ev === 'done', timeoutMs: 10_000 }),
      );
      profile['attached stream: exec line plot'] = await loop(Math.min(n.profile, n.plot), (i) =>
        ch.request({ op: 'exec', id: `bl${i}-${Math.random()}`, code: PLOT_CODE, timeoutMs: 10_000 }, { isLast: (e) => e.ev === 'done', timeoutMs: 10_000 }),
      );
      ch.close();
      res.profile = profile;
    }

    if (want('fairshare')) res.fairShare = await runFairShare(http(), { quick: q, log });

    if (want('ttl')) {
      log(`TTL precision: ${n.ttl} sessions with ttlSeconds 10, idle until the reaper removes them`);
      const events = (await docker.getEvents({
        filters: { type: ['container'], event: ['destroy'], label: [`sessionbox.namespace=${namespace}`] },
      })) as NodeJS.ReadableStream & { destroy?: () => void };
      const gone = new Map<string, number>();
      let buf = '';
      events.on('data', (chunk: Buffer) => {
        const now = Date.now();
        buf += chunk.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          try {
            const ev = JSON.parse(line) as { Actor: { Attributes: Record<string, string> } };
            gone.set(ev.Actor.Attributes['sessionbox.session-id'], now);
          } catch {
            // partial line
          }
        }
      });
      const made = await Promise.all(Array.from({ length: n.ttl }, () => http().createSession({ ttlSeconds: 10 })));
      const expires = new Map(made.map((s) => [s.id, Date.parse(s.expiresAt)]));
      const end = Date.now() + 60_000;
      while ([...expires.keys()].some((id) => !gone.has(id)) && Date.now() < end) await sleep(100);
      events.destroy?.();
      const delays = [...expires].filter(([id]) => gone.has(id)).map(([id, exp]) => gone.get(id)! - exp);
      if (delays.length < expires.size) res.errors.push(`ttl: ${expires.size - delays.length} container(s) still there 60 s after expiry`);
      res.ttl = { ttlSeconds: 10, goneAfterExpiry: summarize(delays), reaperIntervalMs: 1000 };
    }

    let fleet: string[] = [];
    if (want('sustained') || want('memory')) {
      log(`starting ${n.sessions} sessions (the first ${poolSize} from the pool, the rest cold)`);
      const t0 = Date.now();
      const queue = Array.from({ length: n.sessions }, (_, i) => i);
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (queue.shift() !== undefined) {
            const s = await http().createSession();
            fleet.push(s.id);
          }
        }),
      );
      await Promise.all(fleet.map((id) => http().run(id, 'print(1)')));
      log(`${fleet.length} sessions ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }

    if (want('sustained')) {
      log(`sustained: ${fleet.length} sessions, each submitting print(1) with ?wait=true back to back for ${n.seconds} s`);
      const lat: number[] = [];
      let errors = 0;
      let count = 0;
      const groups = await cpuGroups(sys!, fleet, redis, keys);
      const cpu0 = cpuSnapshot(groups);
      const stopAt = performance.now() + n.seconds * 1000;
      const t0 = performance.now();
      await Promise.all(
        fleet.map(async (id) => {
          while (performance.now() < stopAt) {
            try {
              const r = await timed(() => http().run(id, 'print(1)'));
              if (r.value.stdout !== '1\n') errors++;
              else {
                count++;
                lat.push(r.ms);
              }
            } catch {
              errors++;
            }
          }
        }),
      );
      const seconds = (performance.now() - t0) / 1000;
      const cpu1 = cpuSnapshot(groups);
      const cpuMsPerExec: Record<string, number> = {};
      let ours = 0;
      for (const k of Object.keys(groups)) {
        cpuMsPerExec[k] = round((cpu1[k] - cpu0[k]) / Math.max(1, count), 3);
        ours += cpu1[k] - cpu0[k];
      }
      cpuMsPerExec['everything else on the machine'] = round((cpu1.machine - cpu0.machine - ours) / Math.max(1, count), 3);
      res.sustained = {
        sessions: fleet.length,
        seconds: round(seconds, 2),
        executions: count,
        perSecond: round(count / seconds, 1),
        errors,
        latency: summarize(lat),
        cpuMsPerExec,
        machineBusyShare: round((cpu1.machine - cpu0.machine) / (seconds * 1000 * res.machine.cpus), 3),
      };
    }

    if (want('memory')) {
      log(`idle memory: ${fleet.length} idle sessions, settling 5 s, then each container's cgroup`);
      await sleep(5000);
      const ws: number[] = [];
      const rss: number[] = [];
      const shims: number[] = [];
      const perProc = new Map<string, { rss: number[]; anon: number[] }>();
      for (const id of fleet) {
        const cid = (await redis.hget(keys.session(id), 'containerId'))!;
        const m = await containerMemory(cid);
        ws.push(m.workingSetBytes);
        rss.push(m.rssBytes);
        shims.push(shimRss(cid));
        for (const p of m.processes) {
          const name = p.cmd.includes('kernel.py') ? 'kernel (python3 kernel.py)' : p.cmd.includes('supervisor.py') ? 'supervisor (python3 supervisor.py)' : p.cmd.split(' ')[0];
          const e = perProc.get(name) ?? { rss: [], anon: [] };
          e.rss.push(p.rssBytes);
          e.anon.push(p.anonBytes);
          perProc.set(name, e);
        }
      }
      const avail = meminfo().MemAvailable;
      const perSession = summarize(ws).p50 + (Number.isFinite(summarize(shims).p50) ? summarize(shims).p50 : 0);
      res.memory = {
        sessions: fleet.length,
        workingSet: summarize(ws),
        rss: summarize(rss),
        shimRss: summarize(shims.filter(Number.isFinite)),
        perProcess: [...perProc].map(([cmd, v]) => ({
          cmd,
          rssMiB: round(summarize(v.rss).p50 / 1048576, 1),
          anonMiB: round(summarize(v.anon).p50 / 1048576, 1),
        })),
        memAvailableBytes: avail,
        fitEstimate: fleet.length + Math.floor(avail / perSession),
      };
    }
    if (fleet.length) {
      await Promise.all(fleet.map((id) => http().deleteSession(id).catch(() => undefined)));
      fleet = [];
    }

    if (want('floor')) {
      log('memory floor: bare interpreters of the same image with growing imports');
      const prelude = "import shutil; shutil.copytree('/opt/sessionbox/mplcache', '/tmp/mpl', dirs_exist_ok=True)\n";
      res.floor = [];
      for (const v of FLOOR_VARIANTS) {
        const c = await docker.createContainer({
          Image: o.image,
          Entrypoint: ['python3', '-c', prelude + v.code],
          Labels: { 'sessionbox-bench': namespace },
          NetworkDisabled: true,
          HostConfig: { NetworkMode: 'none', Init: true },
        });
        await c.start();
        let last = -1;
        let m = await containerMemory(c.id);
        for (let i = 0; i < 40; i++) {
          await sleep(250);
          m = await containerMemory(c.id);
          if (Math.abs(m.rssBytes - last) < 64 * 1024) break;
          last = m.rssBytes;
        }
        res.floor.push({ name: v.name, workingSetBytes: m.workingSetBytes, rssBytes: m.rssBytes });
        await c.remove({ force: true });
      }
    }
    const lastProbe = probe as { id: string } | null;
    if (lastProbe) await http().deleteSession(lastProbe.id).catch(() => undefined);
  } catch (err) {
    res.errors.push((err as Error).stack ?? String(err));
    log(`error: ${(err as Error).message}`);
  } finally {
    await cleanup();
  }
  if (interrupted) return; // the signal handler exits once the cleanup is done
  if (o.cpuProf) res.cpuProfiles = summarizeProfiles(profDir);
  res.finishedAt = new Date().toISOString();
  res.durationS = round((Date.now() - started) / 1000, 1);
  res.loadAvgEnd = (await machineInfo()).loadAvg;

  writeFileSync(o.out, JSON.stringify(res, null, 2) + '\n');
  const md = report(res);
  writeFileSync(o.out.replace(/\.json$/, '') + '.md', md);
  printConsole(res);
  process.stdout.write('\n' + md + '\n');
  log(`wrote ${path.relative(process.cwd(), o.out)} in ${res.durationS} s`);
  process.exit(res.errors.length ? 1 : 0);
}

/** The processes an execution costs CPU in, grouped for the sustained phase's CPU account. */
async function cpuGroups(sys: BenchSystem, fleet: string[], redis: IORedis, keys: Keys): Promise<Record<string, number[]>> {
  const { api, worker } = sys.pids();
  const cmd = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return '';
    }
  };
  // The Redis this system uses (others may run on the machine): its own pid, when it is local.
  let redisPid = Number(/process_id:(\d+)/.exec(await redis.info('server'))?.[1] ?? 0);
  if (redisPid && !cmd(redisPid).includes('redis-server')) redisPid = 0; // e.g. Redis in a container: its pid means nothing here
  const containerIds = (await Promise.all(fleet.map((id) => redis.hget(keys.session(id), 'containerId')))).filter((x): x is string => !!x);
  const inside = containerIds.flatMap((cid) => containerPids(cid));
  let dockerd: number[] = [];
  try {
    dockerd = [Number(readFileSync('/var/run/docker.pid', 'utf8').trim())];
  } catch {
    dockerd = pidsMatching((_c, comm) => comm === 'dockerd');
  }
  const groups: Record<string, number[]> =
    sys.mode === 'processes' ? { 'bench client': [process.pid], api: [api], worker: [worker] } : { 'api + worker + bench client (one process)': [process.pid] };
  return {
    ...groups,
    'redis-server': redisPid ? [redisPid] : pidsMatching((_c, comm) => comm === 'redis-server'),
    dockerd,
    containerd: pidsMatching((c, comm) => comm === 'containerd' && c.includes('/var/run/docker/containerd')),
    'containerd-shim (per container)': pidsMatching((c) => c.includes('containerd-shim') && containerIds.some((id) => c.includes(id))),
    'supervisor (in container)': inside.filter((p) => cmd(p).includes('supervisor.py')),
    'kernel (in container)': inside.filter((p) => cmd(p).includes('kernel.py')),
  };
}

// ---- output ---------------------------------------------------------------------------------

const pq = (s?: Summary) => (s ? `${fmtMs(s.p50)} / ${fmtMs(s.p95)}` : 'not run');
const mark = (ok: boolean | null) => (ok === null ? '–' : ok ? '✅' : '❌');

interface Row {
  metric: string;
  ours: string;
  exec: string;
  run: string;
  target: string;
  met: boolean | null;
}

/** How many times more of a rate ours is. */
const ratioX = (ours: number, theirs: number) => (theirs > 0 ? `${(ours / theirs).toFixed(ours / theirs >= 10 ? 0 : 1)}×` : 'n/a');

function rows(r: Results): Row[] {
  const b = r.baselines;
  const out: Row[] = [];
  const vs = (ours: number | undefined, theirs: Summary | undefined) => (ours !== undefined && theirs ? `${fmtMs(theirs.p50)} (ours ${speedup(ours, theirs.p50)})` : '–');
  if (r.warm)
    out.push({
      metric: `Session create, warm (pool ${r.options.poolSize}) p50 / p95`,
      ours: pq(r.warm.create),
      exec: '–',
      run: '–',
      target: 'p50 ≤ 20 ms',
      met: r.warm.create.p50 <= 20,
    });
  if (r.cold) out.push({ metric: 'Session create, cold p50 / p95', ours: pq(r.cold.create), exec: '–', run: '–', target: 'p50 ≤ 300 ms', met: r.cold.create.p50 <= 300 });
  if (r.warm)
    out.push({
      metric: 'New sandbox → first print(1) result, warm',
      ours: pq(r.warm.firstResult),
      exec: '–',
      run: vs(r.warm.firstResult.p50, b?.runPrint),
      target: '–',
      met: null,
    });
  if (r.cold)
    out.push({
      metric: 'New sandbox → first print(1) result, cold',
      ours: pq(r.cold.firstResult),
      exec: '–',
      run: vs(r.cold.firstResult.p50, b?.runPrint),
      target: '–',
      met: null,
    });
  if (r.print) {
    const ratio = b ? b.execPrint.p50 / r.print.p50 : NaN;
    out.push({
      metric: '`print(1)` round trip, `?wait=true` p50 / p95',
      ours: pq(r.print),
      exec: vs(r.print.p50, b?.execPrint),
      run: vs(r.print.p50, b?.runPrint),
      target: 'p50 ≤ 10 ms, ≥ 10× exec',
      met: r.print.p50 <= 10 && (!b || ratio >= 10),
    });
  }
  if (r.plot)
    out.push({
      metric: 'matplotlib line plot round trip p50 / p95',
      ours: pq(r.plot),
      exec: vs(r.plot.p50, b?.execPlot),
      run: vs(r.plot.p50, b?.runPlot),
      target: 'p50 ≤ 120 ms',
      met: r.plot.p50 <= 120,
    });
  if (r.sustained)
    out.push({
      metric: `Sustained print(1) executions/s (${r.sustained.sessions} sessions, ${r.sustained.seconds} s)`,
      ours: `${r.sustained.perSecond}/s (p50 ${fmtMs(r.sustained.latency.p50)}, p95 ${fmtMs(r.sustained.latency.p95)}, ${r.sustained.errors} errors)`,
      exec: b ? `${b.execSustained.perSecond}/s with ${b.execSustained.callers} callers (ours ${ratioX(r.sustained.perSecond, b.execSustained.perSecond)})` : '–',
      run: b ? `${b.runSustained.perSecond}/s with ${b.runSustained.callers} callers (ours ${ratioX(r.sustained.perSecond, b.runSustained.perSecond)})` : '–',
      target: '≥ 300/s',
      met: r.sustained.perSecond >= 300,
    });
  if (r.memory)
    out.push({
      metric: `Memory per idle session (${r.memory.sessions} sessions) p50`,
      ours: `${fmtBytes(r.memory.workingSet.p50)} (anon ${fmtBytes(r.memory.rss.p50)}) + shim ${fmtBytes(r.memory.shimRss.p50)}`,
      exec: '–',
      run: '–',
      target: '≤ 30 MB',
      met: r.memory.workingSet.p50 <= 30 * 1024 * 1024,
    });
  if (r.memory)
    out.push({
      metric: 'Idle sessions that fit in this machine’s RAM (estimate)',
      ours: `${r.memory.fitEstimate}`,
      exec: '–',
      run: '–',
      target: '≥ 200',
      met: r.memory.fitEstimate >= 200,
    });
  if (r.ttl)
    out.push({
      metric: `TTL: container gone after expiry p50 / max (${r.ttl.goneAfterExpiry.n} sessions)`,
      ours: `${fmtMs(r.ttl.goneAfterExpiry.p50)} / ${fmtMs(r.ttl.goneAfterExpiry.max)}`,
      exec: '–',
      run: '–',
      target: '≤ 5 s',
      met: r.ttl.goneAfterExpiry.max <= 5000,
    });
  if (r.fairShare) out.push(fairShareRow(r.fairShare));
  if (r.hibernate) out.push(...hibernateRows(r.hibernate));
  if (r.held) out.push(...heldRows(r.held));
  if (r.hibernateCheckpoint) out.push(...checkpointRows(r.hibernateCheckpoint));
  return out;
}

function report(r: Results): string {
  const m = r.machine;
  const lines: string[] = [];
  lines.push(
    `Machine: ${m.cpus} CPU (${m.cpuModel}), ${fmtBytes(m.memTotalBytes)} RAM, ${m.os}, kernel ${m.kernel}, Docker ${m.docker}, cgroup ${m.cgroup}, Node ${m.node}; ` +
      `load average ${m.loadAvg.join(' / ')} at start${r.loadAvgEnd ? `, ${r.loadAvgEnd.join(' / ')} at end` : ''}; mode ${r.options.mode}; ${r.startedAt}, ${r.durationS} s.`,
    '',
    '| Metric | sessionbox | `docker exec python3 -c` per call | `docker run --rm` per call | Target | Met |',
    '|---|---|---|---|---|---|',
  );
  for (const row of rows(r)) lines.push(`| ${row.metric} | ${row.ours} | ${row.exec} | ${row.run} | ${row.target} | ${mark(row.met)} |`);
  if (r.baselines) {
    const b = r.baselines;
    lines.push(
      '',
      `Baselines (p50 / p95): docker exec print(1) ${pq(b.execPrint)}, docker exec plot ${pq(b.execPlot)}, docker run print(1) ${pq(b.runPrint)}, docker run plot ${pq(b.runPlot)}; ` +
        `sustained docker exec ${b.execSustained.perSecond}/s (${b.execSustained.callers} callers), docker run ${b.runSustained.perSecond}/s (${b.runSustained.callers} callers). ` +
        'The baselines start a fresh python3 per call (docker run: in a fresh container); their print(1) imports nothing, their plot imports matplotlib. ' +
        'A cold session’s first result includes its kernel importing numpy, pandas and matplotlib.',
    );
  }
  if (r.print) {
    const d = r.print.breakdown;
    lines.push(
      '',
      `Where a \`print(1)\` round trip goes (means, ms; record timestamps): client → recorded ${d.beforeQueue}, queued → started ${d.queueToStart}, started → finished ${d.run}, finished → client has the answer ${d.afterFinish}.`,
    );
  }
  if (r.jupyter) lines.push('', ...jupyterReport(r.jupyter));
  if (r.profile) {
    lines.push('', '| Piece, measured alone | p50 | p95 |', '|---|---|---|');
    for (const [k, s] of Object.entries(r.profile)) lines.push(`| ${k} | ${fmtMs(s.p50)} | ${s.n > 1 ? fmtMs(s.p95) : '–'} |`);
  }
  if (r.sustained) {
    const c = r.sustained.cpuMsPerExec;
    lines.push(
      '',
      `CPU per sustained execution (ms; machine busy ${(r.sustained.machineBusyShare * 100).toFixed(0)}% of ${r.machine.cpus} CPUs): ` +
        Object.entries(c)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ') +
        '.',
    );
  }
  if (r.memory) {
    lines.push('', `Idle session processes (p50 RSS / anonymous): ${r.memory.perProcess.map((p) => `${p.cmd} ${p.rssMiB} / ${p.anonMiB} MiB`).join('; ')}.`);
  }
  if (r.floor) {
    lines.push('', '| Bare interpreter in the same image | Working set | Anonymous |', '|---|---|---|');
    for (const f of r.floor) lines.push(`| ${f.name} | ${fmtBytes(f.workingSetBytes)} | ${fmtBytes(f.rssBytes)} |`);
  }
  if (r.dify) lines.push(...difyReportLines(r.dify));
  if (r.burst) lines.push(...burstReportLines(r.burst));
  if (r.warm) lines.push('', `Warm pool: ${r.warm.claimed} warm claims measured (${r.warm.missed} fell back to cold); refill ≈ ${r.warm.refillPerSecond} containers/s.`);
  if (r.cpuProfiles?.length) {
    lines.push('', 'CPU profiles (self time by package/file):');
    for (const p of r.cpuProfiles) lines.push(`- ${p.file}: busy ${p.busyMs} of ${p.totalMs} ms — ${p.byBucket.map((b) => `${b.bucket} ${(b.share * 100).toFixed(0)}%`).join(', ')}`);
  }
  if (r.errors.length) lines.push('', `Errors: ${r.errors.map((e) => e.split('\n')[0]).join('; ')}`);
  return lines.join('\n');
}

function printConsole(r: Results) {
  const t = new Table({ head: ['Metric', 'sessionbox', 'docker exec / call', 'docker run / call', 'Target', 'Met'], wordWrap: true, colWidths: [34, 30, 26, 26, 16, 5] });
  for (const row of rows(r)) t.push([row.metric, row.ours, row.exec, row.run, row.target, mark(row.met)]);
  process.stdout.write(t.toString() + '\n');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
