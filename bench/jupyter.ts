/**
 * The Jupyter section of the bench: `print(1)` and a matplotlib plot as one `execute_request` each, timed
 * from the send to iopub `status: idle`, over our /api/kernels/{id}/channels and over a local jupyter_server
 * (Debian's python3-jupyter-server + python3-ipykernel, installed when absent, bound to 127.0.0.1), in one run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { sleep, summarize, type Summary } from './stats';

export const JUPYTER_PLOT = 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3, 4], [1, 4, 9, 16])\nplt.show()';

export interface JupyterSide {
  print: Summary;
  plot: Summary;
}

export interface JupyterResults {
  ours: JupyterSide;
  local: (JupyterSide & { jupyterServer: string; ipykernel: string }) | null;
  localError?: string;
}

/** One kernel over the legacy JSON protocol (as Open WebUI speaks it); `run` resolves at its status: idle. */
class KernelClient {
  private constructor(
    private readonly base: string,
    private readonly token: string,
    readonly id: string,
    private readonly ws: WebSocket,
  ) {}

  static async open(base: string, token: string): Promise<KernelClient> {
    const q = token ? `?token=${encodeURIComponent(token)}` : '';
    const res = await fetch(`${base}/api/kernels${q}`, { method: 'POST', body: JSON.stringify({ name: 'python3' }), headers: { 'content-type': 'application/json' } });
    if (res.status !== 201) throw new Error(`POST /api/kernels: ${res.status} ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/api/kernels/${id}/channels${q}`);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    return new KernelClient(base, token, id, ws);
  }

  /** ms from the send to `status: idle`; checks that output (and a figure) came. */
  run(code: string, expectFigure: boolean): Promise<number> {
    const msgId = randomUUID();
    return new Promise((resolve, reject) => {
      let sawOutput = false;
      const t0 = performance.now();
      const onMessage = (data: WebSocket.RawData) => {
        const m = JSON.parse(data.toString());
        if (m.parent_header?.msg_id !== msgId) return;
        const type = m.msg_type ?? m.header?.msg_type;
        if (type === 'error') return finish(new Error(`${m.content.ename}: ${m.content.evalue}`));
        if ((expectFigure && type === 'display_data' && m.content.data['image/png']) || (!expectFigure && type === 'stream')) sawOutput = true;
        if (type === 'status' && m.content.execution_state === 'idle') finish(sawOutput ? null : new Error(`no ${expectFigure ? 'figure' : 'stdout'} before idle`));
      };
      const finish = (err: Error | null) => {
        const ms = performance.now() - t0;
        this.ws.off('message', onMessage);
        if (err) reject(err);
        else resolve(ms);
      };
      this.ws.on('message', onMessage);
      this.ws.send(
        JSON.stringify({
          header: { msg_id: msgId, msg_type: 'execute_request', username: 'bench', session: randomUUID(), date: '', version: '5.3' },
          parent_header: {},
          metadata: {},
          content: { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true },
          channel: 'shell',
        }),
      );
    });
  }

  async close() {
    this.ws.close();
    const q = this.token ? `?token=${encodeURIComponent(this.token)}` : '';
    await fetch(`${this.base}/api/kernels/${this.id}${q}`, { method: 'DELETE' }).catch(() => undefined);
  }
}

/**
 * Warm-up, then the samples of every target interleaved (ours, local, ours, …), so load from the rest of
 * the machine falls on both alike.
 */
async function measure(targets: { base: string; token: string }[], n: { print: number; plot: number }): Promise<JupyterSide[]> {
  const ks: KernelClient[] = [];
  try {
    for (const t of targets) ks.push(await KernelClient.open(t.base, t.token));
    for (const k of ks) {
      for (let i = 0; i < 10; i++) await k.run('print(1)', false);
      for (let i = 0; i < 3; i++) await k.run(JUPYTER_PLOT, true);
    }
    const print: number[][] = ks.map(() => []);
    const plot: number[][] = ks.map(() => []);
    for (let i = 0; i < n.print; i++) for (const [j, k] of ks.entries()) print[j].push(await k.run('print(1)', false));
    for (let i = 0; i < n.plot; i++) for (const [j, k] of ks.entries()) plot[j].push(await k.run(JUPYTER_PLOT, true));
    return ks.map((_, j) => ({ print: summarize(print[j]), plot: summarize(plot[j]) }));
  } finally {
    for (const k of ks) await k.close();
  }
}

/** Debian's interpreter (a pyenv or venv python3 earlier on PATH would not see Debian's packages). */
const PY = '/usr/bin/python3';
const pyVersion = (mod: string) => spawnSync(PY, ['-c', `import ${mod}; print(${mod}.__version__)`], { encoding: 'utf8' });

/** jupyter_server, ipykernel and matplotlib from Debian, installed as root when absent. */
function ensureLocalJupyter(log: (s: string) => void): { jupyterServer: string; ipykernel: string } {
  if (['jupyter_server', 'ipykernel', 'matplotlib'].some((m) => pyVersion(m).status !== 0)) {
    if (process.getuid?.() !== 0) throw new Error('python3-jupyter-server, python3-ipykernel or python3-matplotlib is not installed (run the bench as root to install them)');
    log('installing python3-jupyter-server and python3-ipykernel from Debian');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
    const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'python3-jupyter-server', 'python3-ipykernel', 'python3-matplotlib'], {
      stdio: 'ignore',
      env,
    });
    if (r.status !== 0) throw new Error(`apt-get install python3-jupyter-server python3-ipykernel failed (${r.status})`);
  }
  return { jupyterServer: pyVersion('jupyter_server').stdout.trim(), ipykernel: pyVersion('ipykernel').stdout.trim() };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

async function startLocalJupyter(token: string): Promise<{ url: string; proc: ChildProcess; dir: string }> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-jupyter-'));
  const proc = spawn(
    PY,
    ['-m', 'jupyter_server', ...(process.getuid?.() === 0 ? ['--allow-root'] : []), '--ServerApp.ip=127.0.0.1', `--ServerApp.port=${port}`, `--ServerApp.token=${token}`, '--ServerApp.open_browser=False', `--ServerApp.root_dir=${dir}`],
    { stdio: 'ignore', env: { ...process.env, JUPYTER_RUNTIME_DIR: path.join(dir, '.runtime'), JUPYTER_DATA_DIR: path.join(dir, '.data') } },
  );
  const url = `http://127.0.0.1:${port}`;
  const end = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`jupyter_server exited with ${proc.exitCode}`);
    const ok = await fetch(`${url}/api?token=${token}`).then((r) => r.ok, () => false);
    if (ok) return { url, proc, dir };
    if (Date.now() > end) throw new Error('jupyter_server did not answer within 60 s');
    await sleep(200);
  }
}

export async function runJupyterBench(p: { ourUrl: string; ourToken?: string; n: { print: number; plot: number }; log: (s: string) => void }): Promise<JupyterResults> {
  const ours = { base: p.ourUrl, token: p.ourToken ?? '' };
  let server: Awaited<ReturnType<typeof startLocalJupyter>> | null = null;
  try {
    let versions: { jupyterServer: string; ipykernel: string };
    const token = randomUUID().replace(/-/g, '');
    try {
      versions = ensureLocalJupyter(p.log);
      server = await startLocalJupyter(token);
    } catch (err) {
      p.log(`jupyter: local jupyter_server not measured: ${(err as Error).message}`);
      p.log(`jupyter: print(1) ×${p.n.print} and a plot ×${p.n.plot} over /api/kernels/{id}/channels (ours only)`);
      const [o] = await measure([ours], p.n);
      return { ours: o, local: null, localError: (err as Error).message };
    }
    p.log(
      `jupyter: print(1) ×${p.n.print} and a plot ×${p.n.plot}, interleaved, over our /api/kernels/{id}/channels and a local ` +
        `jupyter_server ${versions.jupyterServer} (ipykernel ${versions.ipykernel}) on ${server.url}`,
    );
    const [o, l] = await measure([ours, { base: server.url, token }], p.n);
    return { ours: o, local: { ...l, ...versions } };
  } finally {
    if (server) {
      server.proc.kill('SIGTERM');
      await sleep(500);
      if (server.proc.exitCode === null) server.proc.kill('SIGKILL');
      rmSync(server.dir, { recursive: true, force: true });
    }
  }
}

/** Markdown lines: ours next to the local jupyter_server, p50 / p95 to `status: idle`. */
export function jupyterReport(j: JupyterResults): string[] {
  const pq = (s: Summary) => `${s.p50.toFixed(1)} ms / ${s.p95.toFixed(1)} ms`;
  const local = j.local;
  const faster = (ours: Summary, theirs: Summary) => (ours.p50 < theirs.p50 ? `yes (${(theirs.p50 / ours.p50).toFixed(2)}×)` : 'no');
  return [
    `| Jupyter \`execute_request\` → \`status: idle\` (p50 / p95) | sessionbox /api/kernels (own container per kernel) | local jupyter_server${local ? ` ${local.jupyterServer}, ipykernel ${local.ipykernel}` : ''} (local process) | ours faster |`,
    '|---|---|---|---|',
    `| \`print(1)\` (n=${j.ours.print.n}) | ${pq(j.ours.print)} | ${local ? pq(local.print) : `not run: ${j.localError}`} | ${local ? faster(j.ours.print, local.print) : '–'} |`,
    `| matplotlib plot (n=${j.ours.plot.n}) | ${pq(j.ours.plot)} | ${local ? pq(local.plot) : `not run: ${j.localError}`} | ${local ? faster(j.ours.plot, local.plot) : '–'} |`,
  ];
}
