import { docker, pngSize, useSystem } from './helpers/system';

const sys = useSystem();
/** Each test's own session: no test depends on the state another one left. */
let sid: string;

beforeEach(async () => {
  sid = (await sys.http.createSession()).id;
});
afterEach(async () => {
  expect((await sys.http.delete(`/v1/sessions/${sid}`)).status).toBe(204);
});

describe('executions', () => {
  test('202 then GET; ?wait=true gives the whole Execution', async () => {
    const q = await sys.http.post(`/v1/sessions/${sid}/executions`, { code: 'print("hi")' });
    expect(q.status).toBe(202);
    expect(q.body).toMatchObject({ id: expect.any(String), status: 'queued' });
    const w = await sys.http.run(sid, 'print("waited")');
    expect(w).toMatchObject({ sessionId: sid, status: 'succeeded', stdout: 'waited\n', stderr: '', result: null, error: null, figures: [] });
    for (const k of ['queuedAt', 'startedAt', 'finishedAt']) expect(Date.parse(w[k])).not.toBeNaN();
    expect(w.durationMs).toBeGreaterThanOrEqual(0);
    // runs of one session go in submission order: the queued one ended before the waited one started
    const got = await sys.http.get(`/v1/sessions/${sid}/executions/${q.body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id: q.body.id, status: 'succeeded', stdout: 'hi\n' });
  });

  test('state persists across executions like a notebook; trailing expression is the result', async () => {
    await sys.http.run(sid, 'import math\nx = 41\ndef f(v):\n    return v + 1');
    const r = await sys.http.run(sid, 'f(x)');
    expect(r.result).toBe('42');
    const df = await sys.http.run(sid, "import pandas as pd\npd.DataFrame({'a': [1, 2]})");
    expect(df.result).toContain('a');
    expect(df.result.split('\n')).toHaveLength(3);
    const none = await sys.http.run(sid, 'y = 3');
    expect(none.result).toBeNull();
    const files = await sys.http.run(sid, "open('state.txt', 'w').write('kept')");
    expect(files.result).toBe('4');
    expect((await sys.http.run(sid, "open('state.txt').read()")).result).toBe("'kept'");
  });

  test('stdout and stderr are both captured, including from subprocesses', async () => {
    const r = await sys.http.run(sid, "import sys, subprocess\nprint('out')\nprint('err', file=sys.stderr)\nsubprocess.run(['echo', 'child'])");
    expect(r.stdout).toBe('out\nchild\n');
    expect(r.stderr).toBe('err\n');
  });

  test('an exception is a failed result with name, value and traceback, not an HTTP error', async () => {
    await sys.http.run(sid, 'x = 41');
    const r = await sys.http.run(sid, 'def g():\n    return 1 / 0\ng()');
    expect(r.status).toBe('failed');
    expect(r.error.name).toBe('ZeroDivisionError');
    expect(r.error.value).toBe('division by zero');
    expect(r.error.traceback).toContain('ZeroDivisionError');
    expect(r.error.traceback).toContain('return 1 / 0');
    const syntax = await sys.http.run(sid, 'def (:');
    expect(syntax.status).toBe('failed');
    expect(syntax.error.name).toBe('SyntaxError');
    expect((await sys.http.run(sid, 'x')).result).toBe('41');
  });

  test('two sessions never see each other’s variables or files', async () => {
    const a = (await sys.http.createSession()).id;
    const b = (await sys.http.createSession()).id;
    await sys.http.run(a, "secret = 'a-only'\nopen('/work/a.txt', 'w').write('a')\nopen('/tmp/a.txt', 'w').write('a')");
    const r = await sys.http.run(b, "import os\nprint(os.path.exists('/work/a.txt'), os.path.exists('/tmp/a.txt'))\nsecret");
    expect(r.stdout).toBe('False False\n');
    expect(r.status).toBe('failed');
    expect(r.error.name).toBe('NameError');
    await Promise.all([sys.http.delete(`/v1/sessions/${a}`), sys.http.delete(`/v1/sessions/${b}`)]);
  });

  test('executions of one session run one at a time in submission order; sessions run in parallel', async () => {
    const s = (await sys.http.createSession()).id;
    await sys.http.run(s, 'order = []');
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await sys.http.post(`/v1/sessions/${s}/executions`, { code: `import time\ntime.sleep(0.05 * (${6 - i}))\norder.append(${i})` });
      ids.push(r.body.id);
    }
    const r = await sys.http.run(s, 'order');
    expect(r.result).toBe('[0, 1, 2, 3, 4, 5]');
    const runs = await Promise.all(ids.map((id) => sys.http.get(`/v1/sessions/${s}/executions/${id}`)));
    for (let i = 1; i < runs.length; i++) {
      expect(Date.parse(runs[i].body.startedAt)).toBeGreaterThanOrEqual(Date.parse(runs[i - 1].body.finishedAt));
    }
    // two sessions sleeping 1 s each finish in well under 2 s together
    const other = (await sys.http.createSession()).id;
    await sys.http.run(other, '1');
    const t0 = Date.now();
    const both = await Promise.all([sys.http.run(s, 'import time; time.sleep(1)'), sys.http.run(other, 'import time; time.sleep(1)')]);
    expect(both.map((x) => x.status)).toEqual(['succeeded', 'succeeded']);
    const [x, y] = both;
    expect(Date.parse(x.startedAt)).toBeLessThan(Date.parse(y.finishedAt));
    expect(Date.parse(y.startedAt)).toBeLessThan(Date.parse(x.finishedAt));
    expect(Date.now() - t0).toBeGreaterThan(999);
    await Promise.all([sys.http.delete(`/v1/sessions/${s}`), sys.http.delete(`/v1/sessions/${other}`)]);
  });

  test('a run past timeoutMs is stopped with everything it started; state survives', async () => {
    await sys.http.run(sid, 'kept = "yes"');
    const r = await sys.http.run(sid, "import subprocess\nsubprocess.Popen(['sleep', '1000'])\nwhile True:\n    pass", 1500);
    expect(r.status).toBe('timed_out');
    expect(r.cause).toBe('timeout');
    expect(r.restarted).toBe(false);
    const ps = await sys.http.run(
      sid,
      "import os\nsorted(open(f'/proc/{p}/cmdline').read().replace('\\0', ' ').strip() for p in os.listdir('/proc') if p.isdigit())",
    );
    expect(ps.result).not.toContain('sleep 1000');
    expect(JSON.stringify(ps.result)).not.toMatch(/sleep/);
    expect((await sys.http.run(sid, 'kept')).result).toBe("'yes'");
  });

  test('a run that ignores SIGINT is killed; the session says it restarted and keeps working', async () => {
    await sys.http.run(sid, 'kept = "yes"');
    const r = await sys.http.run(sid, 'import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass', 1000);
    expect(r.status).toBe('timed_out');
    expect(r.restarted).toBe(true);
    const after = await sys.http.run(sid, 'kept');
    expect(after.error.name).toBe('NameError');
    expect((await sys.http.run(sid, '1 + 1')).result).toBe('2');
  });

  test('figures come back as PNGs of the expected size; plt.show() works as in a notebook', async () => {
    const r = await sys.http.run(
      sid,
      [
        'import matplotlib.pyplot as plt',
        'fig, ax = plt.subplots(figsize=(4, 3), dpi=100)',
        'ax.plot([1, 2, 3], [2, 4, 1])',
        'plt.show()',
        'fig2 = plt.figure(figsize=(5, 2), dpi=100)',
        'plt.plot([0, 1], [1, 0])',
      ].join('\n'),
    );
    expect(r.status).toBe('succeeded');
    expect(r.figures).toHaveLength(2);
    expect(r.figures[0]).toMatchObject({ mimeType: 'image/png', width: 400, height: 300 });
    expect(r.figures[1]).toMatchObject({ width: 500, height: 200 });
    const png = await fetch(r.figures[0].url);
    expect(png.status).toBe(200);
    expect(png.headers.get('content-type')).toBe('image/png');
    const bytes = Buffer.from(await png.arrayBuffer());
    expect(pngSize(bytes)).toEqual({ width: 400, height: 300 });
    expect((await sys.http.run(sid, 'import matplotlib.pyplot as plt\nlen(plt.get_fignums())')).result).toBe('0');
  });

  test('Japanese labels render with a CJK font; japanize_matplotlib imports', async () => {
    const r = await sys.http.run(
      sid,
      [
        'import japanize_matplotlib',
        'import matplotlib.pyplot as plt',
        'fig, ax = plt.subplots()',
        "ax.bar(['東京', '大阪'], [3, 5])",
        "ax.set_title('売上の推移')",
        'fig.canvas.draw()',
        'from matplotlib.font_manager import findfont, FontProperties',
        "[findfont(FontProperties(family=f)) for f in plt.rcParams['font.family'] if 'CJK' in f]",
      ].join('\n'),
    );
    expect(r.status).toBe('succeeded');
    expect(r.stderr).not.toMatch(/missing from (current )?font/i);
    expect(r.result).toMatch(/NotoSansCJK/i);
    expect(r.figures).toHaveLength(1);
  });

  test('output over the cap is cut with a visible marker; invalid UTF-8 is delivered safely', async () => {
    const r = await sys.http.run(sid, "import sys\nsys.stdout.write('x' * (1024 * 1024 + 5000))\nprint()");
    expect(r.stdoutTruncated).toBe(true);
    expect(r.stdout.length).toBeLessThan(1024 * 1024 + 200);
    expect(r.stdout).toContain('truncated');
    const bin = await sys.http.run(sid, "import os\nos.write(1, b'ok \\xff\\xfe \\xe6\\x97')\nprint(' end')");
    expect(bin.status).toBe('succeeded');
    expect(bin.stdout).toContain('ok ');
    expect(bin.stdout).toContain('\ufffd');
    expect(bin.stdout).toContain('end');
  });

  test('a session container carries every sessionbox label, found by the id its record holds', async () => {
    // found by its id (not by a label), so that no label is assumed present to find it
    const rec = (await sys.api.ctx.core.sessionStore.get(sid))!;
    const info = await docker.getContainer(rec.containerId).inspect();
    const session = (await sys.http.get(`/v1/sessions/${sid}`)).body;
    const ours = Object.fromEntries(Object.entries(info.Config.Labels).filter(([k]) => k.startsWith('sessionbox.')));
    expect(ours).toEqual({
      'sessionbox.managed': 'true',
      'sessionbox.namespace': sys.config.namespace,
      'sessionbox.session-id': sid,
      'sessionbox.host': 'local',
      'sessionbox.created-at': session.createdAt,
      'sessionbox.expires-at': new Date(Date.parse(session.createdAt) + session.ttlSeconds * 1000).toISOString(),
    });
  });
});
