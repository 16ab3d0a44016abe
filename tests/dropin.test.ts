import { namespaceContainers, pngSize, useSystem } from './helpers/system';

const sys = useSystem();

/** Each drop-in call runs in a session of its own that is gone by the time the answer arrives. */
async function expectNoContainerLeft() {
  expect(await namespaceContainers(sys.config.namespace)).toHaveLength(0);
}

/**
 * The code as Dify's HTTP node posts it: the LLM wrote it into JSON with `\\n` for newlines (per the
 * workflow's prompt) and the Code node passed it on unescaped, so after JSON parsing the server
 * sees backslash-n pairs and backslash-quotes. Built from the seed workflow's example code.
 */
const DIFY_CODE = [
  'import matplotlib.pyplot as plt',
  'import japanize_matplotlib',
  'print(\\"売上レポート: 東京\\t大阪\\")',
  'def create_sample_plot():',
  '    fig, ax = plt.subplots()',
  '    x = [1, 2, 3, 4, 5]',
  '    y = [2, 4, 1, 8, 7]',
  "    ax.plot(x, y, marker='o')",
  '    ax.set_title(\\"Sample\\")',
  '    ax.set_xlabel(\\"X\\")',
  '    ax.set_ylabel(\\"Y\\")',
  '    ax.grid(True)',
  '    return fig',
  'fig = create_sample_plot()',
].join('\\n');

describe('POST /execute (the FastAPI executor Dify calls)', () => {
  test('Dify-style escaped code with japanize_matplotlib answers the figure as graph.png', async () => {
    expect(DIFY_CODE).not.toContain('\n');
    const r = await sys.http.post('/execute', { code: DIFY_CODE }, { accept: 'application/json' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('image/png');
    expect(r.headers.get('content-disposition')).toBe('attachment; filename="graph.png"');
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('access-control-expose-headers')).toBe('Content-Disposition');
    const { width, height } = pngSize(r.raw);
    expect(width).toBeGreaterThan(300);
    expect(height).toBeGreaterThan(200);
    await expectNoContainerLeft();
  });

  test('no figure: the original JSON, with Japanese text and escapes decoded and unmangled', async () => {
    const r = await sys.http.post('/execute', { code: 'label = \\"売上は\\t100万円 \\u2192 増加\\"\\nprint(label)\\nprint(\'日本語\\\\n\')' });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      status_code: 200,
      // `\\\\n` in the JSON is `\\n` after parsing, which unicode_escape turns into `\n`: Python prints a blank line
      body: 'コードは実行されましたが、画像は生成されませんでした。\n売上は\t100万円 → 増加\n日本語\n\n',
      files: [],
    });
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    await expectNoContainerLeft();
  });

  test('an exception: status_code 500 JSON with the message and the traceback', async () => {
    const r = await sys.http.post('/execute', { code: 'def ratio(a, b):\\n    return a / b\\nratio(1, 0)' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status_code: 500, body: 'エラーが発生しました: division by zero', files: [] });
    expect(r.body.traceback).toContain('ZeroDivisionError: division by zero');
    expect(r.body.traceback).toContain('return a / b');
    await expectNoContainerLeft();
  });

  test('CORS preflight is allowed from any origin; a body without code is a 400 that still carries CORS', async () => {
    const pre = await fetch(`${sys.url}/execute`, {
      method: 'OPTIONS',
      headers: { origin: 'http://dify.local', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
    expect(pre.headers.get('access-control-allow-headers')).toBe('content-type');
    const bad = await sys.http.post('/execute', { script: 'print(1)' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
    expect(bad.headers.get('access-control-allow-origin')).toBe('*');
    await expectNoContainerLeft();
  });
});

describe('POST /v1/run/ (AgentRun REST API)', () => {
  test('prints hello world; also without the trailing slash; a traceback on error', async () => {
    const r = await sys.http.post('/v1/run/', { code: 'print("hello, world!")' });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ output: 'hello, world!\n' });
    await expectNoContainerLeft();
    const fib = await sys.http.post('/v1/run', { code: 'x, y = 0, 1\nfor _ in range(10):\n    print(y)\n    x, y = y, x + y' });
    expect(fib.body.output.trim().split('\n').map(Number)).toEqual([1, 1, 2, 3, 5, 8, 13, 21, 34, 55]);
    const err = await sys.http.post('/v1/run/', { code: 'print("before")\nimport nonexistent_module' });
    expect(err.body.output).toMatch(/^before\n[\s\S]*ModuleNotFoundError: No module named 'nonexistent_module'/);
    await expectNoContainerLeft();
  });
});
