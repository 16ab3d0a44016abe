import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { JsonClient } from './http-client';
import { fmtMs, summarize, timed, type Summary } from './stats';

const run = promisify(execFile);

/**
 * `--only burst`: N conversations start at the same moment, each creating a session and running
 * `print(1)`; then the same burst as `docker run --rm … print(1)` per call; the largest burst once more with a
 * pandas + matplotlib first cell, beside `docker run` of that cell. And a running session's
 * `print(1)` and plot, quiet and while 8 sessions are being created.
 */

const PLOT = 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3, 4], [1, 4, 9, 16])\nplt.show()';

/** The common first cell of LLM code: pandas and matplotlib, one chart. `docker run` saves the PNG instead of showing it. */
const DATA_CELL = [
  'import pandas as pd',
  'import matplotlib.pyplot as plt',
  "df = pd.DataFrame({'x': range(10), 'y': [i * i for i in range(10)]})",
  "df.plot(x='x', y='y')",
  'plt.show()',
  "print(int(df['y'].sum()))",
].join('\n');
const DATA_CELL_RUN = DATA_CELL.replace('plt.show()', "plt.savefig('/tmp/chart.png')");

export interface BurstRow {
  n: number;
  create: Summary;
  firstResult: Summary;
  dockerRun: Summary;
}

export interface BurstResult {
  /** Working set of each listed container once the pool is full, by tier (MiB): what the pool costs at rest. */
  poolAtRest: { eager: number[]; lazy: number[] };
  bursts: BurstRow[];
  /** N conversations at once whose first cell is `DATA_CELL` (pandas + matplotlib + a chart). */
  dataBurst: BurstRow;
  running: {
    quietPrint: Summary;
    quietPlot: Summary;
    burstPrint: Summary;
    burstPlot: Summary;
    /** After the creates, until the pool is full again: what its refill costs the running session. */
    refillPrint: Summary;
    refillPlot: Summary;
    creates: number;
  };
}

export interface BurstOptions {
  http: JsonClient;
  image: string;
  tag: string;
  sizes: number[];
  /** Every burst starts from a full pool. */
  waitPool: () => Promise<void>;
  /** Creations under way in the pool (a pool sized by demand may still be growing once full). */
  filling: () => Promise<number>;
  /** Every tier listed at its size. */
  full: () => Promise<boolean>;
  /** Working set (MiB) of each listed container, by tier. */
  poolMemory: () => Promise<{ eager: number[]; lazy: number[] }>;
  log: (s: string) => void;
}

async function conversation(http: JsonClient, code = 'print(1)', expect = '1\n'): Promise<{ create: number; first: number; id: string }> {
  const t0 = performance.now();
  const s = await http.createSession();
  const create = performance.now() - t0;
  const r = await http.run(s.id, code);
  if (r.stdout !== expect) throw new Error(`burst first cell: ${JSON.stringify(r).slice(0, 300)}`);
  return { create, first: performance.now() - t0, id: s.id };
}

async function dockerRunPrint(image: string, tag: string, code = 'print(1)', expect = '1\n'): Promise<number> {
  const args = ['run', '--rm', '--network', 'none', '--label', `sessionbox-bench=${tag}`, '--entrypoint', 'python3', image, '-c', code];
  const { ms, value } = await timed(() => run('docker', args));
  if (value.stdout !== expect) throw new Error(`docker run first cell: ${JSON.stringify(value.stdout)}`);
  return ms;
}

export async function benchBurst(opts: BurstOptions): Promise<BurstResult> {
  const { http } = opts;
  // Full, and no creation under way for half a second: the pool has settled at its target.
  const o = {
    ...opts,
    waitPool: async () => {
      for (let quiet = 0; quiet < 5; ) {
        await opts.waitPool();
        quiet = (await opts.filling()) === 0 ? quiet + 1 : 0;
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
  await o.waitPool();
  // Settled first: a container's memory moves for a second or two after it is listed.
  await new Promise((r) => setTimeout(r, 3000));
  const poolAtRest = await o.poolMemory();
  const bursts: BurstRow[] = [];
  for (const n of o.sizes) {
    await o.waitPool();
    o.log(`burst: ${n} conversations at once (create + print(1)), then ${n} docker run print(1) at once`);
    const conv = await Promise.all(Array.from({ length: n }, () => conversation(http)));
    await Promise.all(conv.map((c) => http.deleteSession(c.id)));
    await o.waitPool();
    const runs = await Promise.all(Array.from({ length: n }, () => dockerRunPrint(o.image, o.tag)));
    bursts.push({ n, create: summarize(conv.map((c) => c.create)), firstResult: summarize(conv.map((c) => c.first)), dockerRun: summarize(runs) });
  }

  const dataN = Math.max(...o.sizes);
  await o.waitPool();
  o.log(`burst: ${dataN} conversations at once, first cell pandas + matplotlib + a chart, then ${dataN} docker run of that cell at once`);
  const dataConv = await Promise.all(Array.from({ length: dataN }, () => conversation(http, DATA_CELL, '285\n')));
  await Promise.all(dataConv.map((c) => http.deleteSession(c.id)));
  await o.waitPool();
  const dataRuns = await Promise.all(Array.from({ length: dataN }, () => dockerRunPrint(o.image, o.tag, DATA_CELL_RUN, '285\n')));
  const dataBurst = { n: dataN, create: summarize(dataConv.map((c) => c.create)), firstResult: summarize(dataConv.map((c) => c.first)), dockerRun: summarize(dataRuns) };

  await o.waitPool();
  const probe = await http.createSession();
  for (let i = 0; i < 5; i++) await http.run(probe.id, i % 2 ? PLOT : 'print(1)');
  const quietPrint: number[] = [];
  const quietPlot: number[] = [];
  for (let i = 0; i < 30; i++) {
    quietPrint.push((await timed(() => http.run(probe.id, 'print(1)'))).ms);
    quietPlot.push((await timed(() => http.run(probe.id, PLOT))).ms);
  }
  await o.waitPool();
  o.log('burst: a running session\'s print(1) and plot while 8 sessions are created (×10: each burst of claims lasts about one sample)');
  const burstPrint: number[] = [];
  const burstPlot: number[] = [];
  const refillPrint: number[] = [];
  const refillPlot: number[] = [];
  const creates = 8;
  for (let b = 0; b < 10; b++) {
    await o.waitPool();
    let done = false;
    const made = Promise.all(Array.from({ length: creates }, () => conversation(http))).finally(() => (done = true));
    while (!done) {
      burstPrint.push((await timed(() => http.run(probe.id, 'print(1)'))).ms);
      burstPlot.push((await timed(() => http.run(probe.id, PLOT))).ms);
    }
    await Promise.all((await made).map((c) => http.deleteSession(c.id)));
    while (!(await o.full())) {
      refillPrint.push((await timed(() => http.run(probe.id, 'print(1)'))).ms);
      refillPlot.push((await timed(() => http.run(probe.id, PLOT))).ms);
    }
  }
  await http.deleteSession(probe.id);
  return {
    poolAtRest,
    bursts,
    dataBurst,
    running: { quietPrint: summarize(quietPrint), quietPlot: summarize(quietPlot), burstPrint: summarize(burstPrint),
      burstPlot: summarize(burstPlot),
      refillPrint: summarize(refillPrint),
      refillPlot: summarize(refillPlot),
      creates,
    },
  };
}

export function burstReportLines(r: BurstResult): string[] {
  const pm = (s: Summary) => `${fmtMs(s.p50)} / ${fmtMs(s.max)}`;
  const x = (a: Summary, b: Summary) => `${(a.p50 / b.p50).toFixed(1)}×`;
  const { running: q } = r;
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  const tier = (name: string, a: number[]) => `${a.length} ${name} (p50 ${summarize(a).p50.toFixed(1)} MiB each)`;
  return [
    '',
    `The pool at rest: ${tier('eager', r.poolAtRest.eager)} + ${tier('lazy', r.poolAtRest.lazy)} = ${sum([...r.poolAtRest.eager, ...r.poolAtRest.lazy]).toFixed(0)} MiB in all.`,
    '',
    '| Conversations at once | create p50 / max | first result p50 / max | `docker run` of the same first cell, same burst, p50 / max |',
    '|---|---|---|---|',
    ...r.bursts.map((b) => `| ${b.n} | ${pm(b.create)} | ${pm(b.firstResult)} | ${pm(b.dockerRun)} |`),
    `| ${r.dataBurst.n}, first cell pandas + matplotlib + a chart | ${pm(r.dataBurst.create)} | ${pm(r.dataBurst.firstResult)} | ${pm(r.dataBurst.dockerRun)} (same cell, PNG saved) |`,
    '',
    `A running session during a burst of ${q.creates} creates (p50 quiet → during): print(1) ${fmtMs(q.quietPrint.p50)} → ${fmtMs(q.burstPrint.p50)} (${x(q.burstPrint, q.quietPrint)}, ${q.burstPrint.n} samples), ` +
      `plot ${fmtMs(q.quietPlot.p50)} → ${fmtMs(q.burstPlot.p50)} (${x(q.burstPlot, q.quietPlot)}, ${q.burstPlot.n} samples). ` +
      `During the pool's refill that follows: print(1) ${fmtMs(q.refillPrint.p50)} (${x(q.refillPrint, q.quietPrint)}, ${q.refillPrint.n} samples), ` +
      `plot ${fmtMs(q.refillPlot.p50)} (${x(q.refillPlot, q.quietPlot)}, ${q.refillPlot.n} samples).`,
  ];
}
