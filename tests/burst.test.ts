import { cpus } from 'node:os';
import IORedis from 'ioredis';
import { Keys } from '@sessionbox/core';
import { REDIS_URL, docker, pngSize, useSystem, waitFor, type TestSystem } from './helpers/system';

/** Issue 16: pool refills yield the CPU while they warm; a cold kernel imports on first use; the pool follows demand. */

const LOADED = "import sys\nprint(sorted(m for m in ('numpy', 'pandas', 'matplotlib') if m in sys.modules))";

async function containerOf(redis: IORedis, keys: Keys, sessionId: string) {
  const id = await redis.hget(keys.session(sessionId), 'containerId');
  if (!id) throw new Error(`no container recorded for ${sessionId}`);
  return docker.getContainer(id).inspect();
}

// One connection for the whole file, to read session records and the pool's lists.
const redis = new IORedis(REDIS_URL);
afterAll(() => redis.quit());

async function end(sys: TestSystem, sessionId: string) {
  expect((await sys.http.delete(`/v1/sessions/${sessionId}`)).status).toBe(204);
}

describe('a cold session (no pool): imports on first use', () => {
  const sys = useSystem({ SESSIONBOX_POOL_SIZE: '0' });

  test('answers before importing anything, at normal CPU weight; pandas works in the first cell that uses it', async () => {
    const s = await sys.http.createSession();
    const info = await containerOf(redis, new Keys(sys.config.namespace), s.id);
    expect(info.Config.Env).toContain('SESSIONBOX_IMPORTS=lazy');
    expect(info.HostConfig.CpuShares).toBe(1024);
    const first = await sys.http.run(s.id, `${LOADED}\nimport os\nprint([k for k in os.environ if k.startswith('SESSIONBOX_')])`);
    // The switch is the supervisor's: the kernel's env carries no SESSIONBOX_ setting.
    expect(first).toMatchObject({ status: 'succeeded', stdout: '[]\n[]\n' });
    const df = await sys.http.run(s.id, "import pandas\ndf = pandas.DataFrame({'a': [1, 2, 3]})\nprint(int(df['a'].sum()), type(df).__module__)");
    expect(df).toMatchObject({ status: 'succeeded', stdout: '6 pandas.core.frame\n', stderr: '' });
    await end(sys, s.id);
  });

  test('the first cell imports under aliases; what the deferred imports take is not charged to memoryMb', async () => {
    // memoryMb 64 (the least): numpy, pandas and matplotlib (~67 MiB of data) plus 40 MiB of user data.
    const s = await sys.http.createSession({ limits: { memoryMb: 64 } });
    const r = await sys.http.run(
      s.id,
      [
        'import numpy as np, pandas as pd, matplotlib.pyplot as plt',
        "df = pd.DataFrame({'x': np.arange(4), 'y': np.arange(4) ** 2})",
        'block = np.ones(40 * 2**20 // 8)',
        "print(int(df['y'].sum()), int(block.sum()) * 8 // 2**20)",
      ].join('\n'),
    );
    expect({ ...r, error: r.error ?? null }).toMatchObject({ status: 'succeeded', stdout: '14 40\n', stderr: '', error: null });
    await end(sys, s.id);
  });

  test('a figure and japanize_matplotlib work from a cold kernel, set up as a preloaded one', async () => {
    const s = await sys.http.createSession();
    const code = [
      'import japanize_matplotlib',
      'import matplotlib, matplotlib.pyplot as plt',
      "plt.bar(['東京', '大阪'], [3, 5]); plt.title('売上の推移')",
      'plt.show()',
      "print(matplotlib.get_backend(), matplotlib.rcParams['font.family'], matplotlib.rcParams['axes.unicode_minus'])",
      'from matplotlib.font_manager import findfont, FontProperties',
      "print([findfont(FontProperties(family=f)) for f in plt.rcParams['font.family'] if 'CJK' in f])",
      'fig = plt.figure(figsize=(5, 2)); fig.gca().plot([1, 2])',
      'fig',
    ].join('\n');
    const r = await sys.http.run(s.id, code);
    expect(r.status).toBe('succeeded');
    const [settings, cjkFonts] = (r.stdout as string).split('\n');
    expect(settings).toBe("agg ['DejaVu Sans', 'Noto Sans CJK JP'] False");
    expect(cjkFonts).toMatch(/NotoSansCJK/i);
    // Tofu shows up as matplotlib's "Glyph … missing from current font" warning.
    expect(r.stderr).not.toMatch(/Glyph|missing from (current )?font/i);
    // plt.show() sends the first; the trailing figure value is shown like a notebook's.
    expect(r.figures).toHaveLength(2);
    const png = Buffer.from(await (await fetch(r.figures[0].url)).arrayBuffer());
    expect(pngSize(png)).toEqual({ width: r.figures[0].width, height: r.figures[0].height });
    expect(r.figures[1]).toMatchObject({ mimeType: 'image/png', width: 500, height: 200 });
    await end(sys, s.id);
  });
});

describe('a pooled session (pool of 1): warms at low CPU weight, listed and claimed at normal', () => {
  const sys = useSystem({ SESSIONBOX_POOL_SIZE: '1' });

  test('a warming container has CpuShares 2 and preloads; once listed it has 1024, and the claimed session keeps it', async () => {
    const keys = new Keys(sys.config.namespace);
    // Caught while it warms (its imports take about a second at the low weight), before it is listed.
    const warming = await waitFor(async () => {
      const [c] = await docker.listContainers({ all: true, filters: { label: [`sessionbox.namespace=${sys.config.namespace}`, 'sessionbox.pool=true'] } });
      return c ? docker.getContainer(c.Id).inspect() : null;
    }, 30_000, 20);
    expect(await redis.llen(keys.pool('local'))).toBe(0);
    expect(warming.HostConfig.CpuShares).toBe(2);
    expect(warming.Config.Env).not.toContain('SESSIONBOX_IMPORTS=lazy');

    const raw = await waitFor(() => redis.lindex(keys.pool('local'), 0), 90_000);
    const entry = JSON.parse(raw) as { sessionId: string; containerId: string };
    expect(entry.containerId).toBe(warming.Id);
    expect((await docker.getContainer(entry.containerId).inspect()).HostConfig.CpuShares).toBe(1024);

    const s = await sys.http.createSession();
    expect(s.id).toBe(entry.sessionId);
    expect((await docker.getContainer(entry.containerId).inspect()).HostConfig.CpuShares).toBe(1024);
    const r = await sys.http.run(s.id, LOADED);
    expect(r).toMatchObject({ status: 'succeeded', stdout: "['matplotlib', 'numpy', 'pandas']\n" });
    await end(sys, s.id);
  });
});

describe('a pool sized by demand (size 1, budget 160 MiB = 2 containers, 10 s window)', () => {
  const sys = useSystem({ SESSIONBOX_POOL_SIZE: '1', SESSIONBOX_POOL_MEMORY_MB: '160', SESSIONBOX_POOL_DEMAND_WINDOW_SECONDS: '10' });

  test('grows with a burst of creates to its budget, never past it, and shrinks back when idle', async () => {
    const keys = new Keys(sys.config.namespace);
    const held = async () => (await redis.llen(keys.pool('local'))) + (await redis.zcard(keys.poolFilling('local')));
    await waitFor(async () => (await redis.llen(keys.pool('local'))) === 1, 90_000);
    const made = await Promise.all([1, 2, 3].map(() => sys.http.createSession()));
    await waitFor(async () => (await redis.llen(keys.pool('local'))) === 2, 90_000);
    for (let i = 0; i < 10; i++) {
      expect(await held()).toBeLessThanOrEqual(2);
      await new Promise((r) => setTimeout(r, 100));
    }
    // The window passes with no creates: back to its size (surplus taken back within a check interval).
    await waitFor(async () => (await redis.llen(keys.pool('local'))) === 1, 30_000);
    expect(await held()).toBe(1);
    for (const s of made) await end(sys, s.id);
  });
});

describe('a two-tier pool (1 eager + 2 lazy): a burst finds ready containers; claims take the eager one first', () => {
  const sys = useSystem({ SESSIONBOX_POOL_SIZE: '1', SESSIONBOX_POOL_LAZY_SIZE: '2' });
  const entries = async (list: string) => (await redis.lrange(list, 0, -1)).map((raw) => JSON.parse(raw) as { sessionId: string; containerId: string; tier?: string });

  test('lazy containers are listed apart, import on first use and are claimed after the eager one; refills share one creation slot', async () => {
    const keys = new Keys(sys.config.namespace);
    const [eagerList, lazyList] = [keys.pool('local'), keys.pool('local', 'lazy')];
    const filling = async () => (await redis.zcard(keys.poolFilling('local'))) + (await redis.zcard(keys.poolFilling('local', 'lazy')));
    // Both tiers fill through the worker's one slot (half the cores, at least 1; 1 on a 2-core machine).
    const slots = Math.max(1, Math.min(4, Math.floor(cpus().length / 2)));
    let mostFilling = 0;
    await waitFor(async () => {
      mostFilling = Math.max(mostFilling, await filling());
      return (await redis.llen(eagerList)) === 1 && (await redis.llen(lazyList)) === 2;
    }, 120_000, 20);
    expect(mostFilling).toBeGreaterThan(0);
    expect(mostFilling).toBeLessThanOrEqual(slots);

    const [eager] = await entries(eagerList);
    const lazy = await entries(lazyList);
    expect(lazy.map((e) => e.tier)).toEqual(['lazy', 'lazy']);
    for (const e of lazy) {
      const info = await docker.getContainer(e.containerId).inspect();
      expect(info.Config.Env).toContain('SESSIONBOX_IMPORTS=lazy');
      expect(info.Config.Labels['sessionbox.pool']).toBe('true');
      expect(info.HostConfig.CpuShares).toBe(1024);
    }
    // The metrics and a cleanup plan see both lists: a listed lazy container is neither missing nor an orphan.
    const metrics = await (await fetch(`${sys.url}/metrics`)).text();
    expect(metrics).toMatch(/sessionbox_pool_size\{host="local",tier="eager"\} 1/);
    expect(metrics).toMatch(/sessionbox_pool_size\{host="local",tier="lazy"\} 2/);
    const plan = await sys.http.post('/v1/admin/cleanup', { dryRun: true, graceSeconds: 0 });
    expect(plan.status).toBe(200);
    const planned = (plan.body.plan.actions as { containerId?: string }[]).map((a) => a.containerId ?? '');
    for (const e of lazy) expect(planned.filter((id) => id && e.containerId.startsWith(id))).toEqual([]);

    const made = [];
    for (let i = 0; i < 3; i++) made.push(await sys.http.createSession());
    expect(made.map((s) => s.id)).toEqual([eager.sessionId, lazy[0].sessionId, lazy[1].sessionId]);
    expect(await sys.http.run(made[0].id, LOADED)).toMatchObject({ status: 'succeeded', stdout: "['matplotlib', 'numpy', 'pandas']\n" });
    expect(await sys.http.run(made[1].id, LOADED)).toMatchObject({ status: 'succeeded', stdout: '[]\n' });
    const df = await sys.http.run(made[1].id, "import pandas as pd\nprint(int(pd.DataFrame({'a': [1, 2, 3]})['a'].sum()))");
    expect(df).toMatchObject({ status: 'succeeded', stdout: '6\n', stderr: '' });
    for (const s of made) await end(sys, s.id);
  });
});
