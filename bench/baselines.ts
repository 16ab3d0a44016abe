import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { docker } from './system';
import { summarize, timed, type Summary } from './stats';

const run = promisify(execFile);

/** The same line plot as ours, done the usual way: a fresh interpreter imports matplotlib, renders, prints the PNG. */
export const PLOT_SCRIPT = [
  // Same prebuilt font cache the session image uses, so the baseline does not rebuild it every call.
  "import os, shutil, base64, io; shutil.copytree('/opt/sessionbox/mplcache', '/tmp/mpl', dirs_exist_ok=True); os.environ['MPLCONFIGDIR'] = '/tmp/mpl'",
  "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt",
  'plt.plot([1, 2, 3, 4], [1, 4, 9, 16]); b = io.BytesIO(); plt.savefig(b, format="png")',
  'print(len(base64.b64encode(b.getvalue())))',
].join('\n');

export interface Throughput {
  callers: number;
  seconds: number;
  calls: number;
  perSecond: number;
  errors: number;
}

export interface BaselineResults {
  execPrint: Summary;
  execPlot: Summary;
  runPrint: Summary;
  runPlot: Summary;
  /** print(1) calls per second with several callers at once, each design at its best concurrency for this machine. */
  execSustained: Throughput;
  runSustained: Throughput;
}

/** Calls `fn` back to back from `callers` loops for `seconds`; counts the calls that succeeded. */
async function sustained(callers: number, seconds: number, fn: () => Promise<unknown>): Promise<Throughput> {
  let calls = 0;
  let errors = 0;
  const t0 = performance.now();
  const stopAt = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < stopAt) {
        try {
          await fn();
          calls++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  return { callers, seconds: Number(s.toFixed(2)), calls, perSecond: Number((calls / s).toFixed(1)), errors };
}

async function docker_(args: string[], expect: RegExp): Promise<number> {
  const { ms, value } = await timed(() => run('docker', args, { maxBuffer: 16 * 1024 * 1024 }));
  if (!expect.test(value.stdout)) throw new Error(`docker ${args.slice(0, 2).join(' ')}: unexpected output ${JSON.stringify(value.stdout.slice(0, 200))} ${value.stderr.slice(0, 300)}`);
  return ms;
}

/**
 * The two usual self-hosted designs, timed through the docker CLI as a tool-calling backend
 * would spawn it: `docker exec <long-lived container> python3 -c …` per call, and
 * `docker run --rm … python3 -c …` per call (a new container each time), same image, no network.
 */
export async function runBaselines(p: {
  image: string;
  tag: string;
  n: { execPrint: number; execPlot: number; runPrint: number; runPlot: number; sustainedSeconds: number };
  log: (s: string) => void;
}): Promise<BaselineResults> {
  const labels = { 'sessionbox-bench': p.tag };
  const c = await docker.createContainer({
    Image: p.image,
    Entrypoint: ['sleep'],
    Cmd: ['infinity'],
    Labels: labels,
    NetworkDisabled: true,
    HostConfig: { NetworkMode: 'none', Init: true },
  });
  await c.start();
  try {
    const exec = (code: string, expect: RegExp) => docker_(['exec', c.id, 'python3', '-c', code], expect);
    const runArgs = ['run', '--rm', '--network', 'none', '--label', `sessionbox-bench=${p.tag}`, '--entrypoint', 'python3', p.image, '-c'];
    const times = async (n: number, warm: number, fn: () => Promise<number>) => {
      for (let i = 0; i < warm; i++) await fn();
      const xs: number[] = [];
      for (let i = 0; i < n; i++) xs.push(await fn());
      return summarize(xs);
    };
    p.log(`baseline: docker exec python3 -c 'print(1)' ×${p.n.execPrint}`);
    const execPrint = await times(p.n.execPrint, 3, () => exec('print(1)', /^1\n$/));
    p.log(`baseline: docker exec python3 (matplotlib line plot) ×${p.n.execPlot}`);
    const execPlot = await times(p.n.execPlot, 1, () => exec(PLOT_SCRIPT, /^\d{4,}\n$/));
    p.log(`baseline: docker run --rm python3 -c 'print(1)' ×${p.n.runPrint}`);
    const runPrint = await times(p.n.runPrint, 1, () => docker_([...runArgs, 'print(1)'], /^1\n$/));
    p.log(`baseline: docker run --rm python3 (matplotlib line plot) ×${p.n.runPlot}`);
    const runPlot = await times(p.n.runPlot, 0, () => docker_([...runArgs, PLOT_SCRIPT], /^\d{4,}\n$/));
    p.log(`baseline: sustained docker exec print(1), 8 callers, ${p.n.sustainedSeconds} s`);
    const execSustained = await sustained(8, p.n.sustainedSeconds, () => exec('print(1)', /^1\n$/));
    p.log(`baseline: sustained docker run --rm print(1), 4 callers, ${p.n.sustainedSeconds} s`);
    const runSustained = await sustained(4, p.n.sustainedSeconds, () => docker_([...runArgs, 'print(1)'], /^1\n$/));
    return { execPrint, execPlot, runPrint, runPlot, execSustained, runSustained };
  } finally {
    await c.remove({ force: true }).catch(() => undefined);
  }
}

/** Memory of a bare interpreter with a given set of imports, to show what bounds a session's idle memory. */
export const FLOOR_VARIANTS: { name: string; code: string }[] = [
  { name: 'python3, no imports', code: 'import time; time.sleep(3600)' },
  { name: 'python3 + numpy', code: 'import numpy, time; time.sleep(3600)' },
  { name: 'python3 + numpy + pandas', code: 'import numpy, pandas, time; time.sleep(3600)' },
  {
    name: 'python3 + numpy + matplotlib (pyplot, Agg)',
    code: "import os; os.environ['MPLCONFIGDIR']='/tmp/mpl'; import numpy, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot, time; time.sleep(3600)",
  },
  {
    name: 'python3 + numpy + pandas + matplotlib',
    code: "import os; os.environ['MPLCONFIGDIR']='/tmp/mpl'; import numpy, pandas, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot, time; time.sleep(3600)",
  },
];
