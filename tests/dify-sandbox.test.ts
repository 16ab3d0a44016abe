import { Redis } from 'ioredis';
import { loadConfig } from '@sessionbox/core';
import { REDIS_URL, namespaceContainers, startSystem, useSystem } from './helpers/system';
import { JINJA2_PRELOAD, JINJA2_RUNNER, NODEJS_RUNNER, PYTHON3_RUNNER } from './helpers/dify-templates';

/**
 * Dify's Code and Template nodes against the dify-sandbox drop-in. The client below does what
 * Dify's api/core/helper/code_executor does: the same runner scripts around the user's code
 * (python3_transformer, jinja2_transformer with its preload, javascript_transformer), inputs as
 * base64 JSON, the same request, and the same reading of the answer, failure paths included.
 */

const KEY = 'sk-dify-code-node';
const sys = useSystem({ SESSIONBOX_API_KEYS: `dify:${KEY}`, SESSIONBOX_DIFY_TIMEOUT_MS: '4000', SESSIONBOX_POOL_SIZE: '1' });

class CodeExecutionException extends Error {}

const b64Inputs = (inputs: Record<string, unknown>) => Buffer.from(JSON.stringify(inputs), 'utf8').toString('base64');




type CodeLanguage = 'python3' | 'jinja2' | 'javascript';
const TRANSFORMERS: Record<CodeLanguage, { runner: string; preload: string; running: string }> = {
  python3: { runner: PYTHON3_RUNNER, preload: '', running: 'python3' },
  jinja2: { runner: JINJA2_RUNNER, preload: JINJA2_PRELOAD, running: 'python3' },
  javascript: { runner: NODEJS_RUNNER, preload: '', running: 'nodejs' },
};

/** TemplateTransformer.extract_result_str_from_response: greedy, DOTALL. */
function extractResult(stdout: string): string {
  const m = /<<RESULT>>([\s\S]*)<<RESULT>>/.exec(stdout);
  if (!m) throw new Error(`Failed to parse result: no result tag found in response. Response: ${stdout.slice(0, 200)}...`);
  return m[1];
}

/** CodeExecutor.execute_code: POST /v1/sandbox/run, then the answer read as Dify reads it. */
async function executeCode(language: string, preload: string, code: string, key = KEY): Promise<string> {
  let res: Response;
  try {
    res = await fetch(`${sys.url}/v1/sandbox/run`, {
      method: 'POST',
      headers: { 'X-Api-Key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ language, code, preload, enable_network: true }),
    });
  } catch (e) {
    throw new CodeExecutionException(`Failed to execute code, which is likely a network issue, please check if the sandbox service is running. ( Error: ${(e as Error).message} )`);
  }
  if (res.status === 503) throw new CodeExecutionException('Code execution service is unavailable');
  if (res.status !== 200) {
    throw new CodeExecutionException(
      `Failed to execute code, which is likely a network issue, please check if the sandbox service is running. ( Error: Failed to execute code, got status code ${res.status}, please check if the sandbox service is running )`,
    );
  }
  let body: { code: number; message: string; data: { stdout?: string | null; error?: string | null } | null };
  try {
    body = (await res.json()) as typeof body;
  } catch {
    throw new CodeExecutionException('Failed to parse response');
  }
  if (body.code !== 0) throw new CodeExecutionException(body.message);
  if (body.data === null || typeof body.data !== 'object') throw new CodeExecutionException('Failed to parse response');
  if (body.data.error) throw new CodeExecutionException(body.data.error);
  return body.data.stdout ?? '';
}

/** CodeExecutor.execute_workflow_code_template: wrap, run, transform_response. */
async function executeWorkflowCodeTemplate(language: CodeLanguage, code: string, inputs: Record<string, unknown>, key = KEY) {
  const t = TRANSFORMERS[language];
  const runner = t.runner.replace('{{code}}', code).replace('{{inputs}}', b64Inputs(inputs));
  const stdout = await executeCode(t.running, t.preload, runner, key);
  if (language === 'jinja2') return { result: extractResult(stdout) };
  const result = JSON.parse(extractResult(stdout));
  if (typeof result !== 'object' || result === null || Array.isArray(result)) throw new Error(`Result must be a dict, got ${typeof result}`);
  return result as Record<string, unknown>;
}

async function rawRun(body: unknown, key = KEY) {
  const res = await fetch(`${sys.url}/v1/sandbox/run`, {
    method: 'POST',
    headers: { 'X-Api-Key': key, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

async function expectNoContainerLeft() {
  // Pool containers (label sessionbox.pool=true, never yet claimed) are the only ones allowed to exist.
  const left = (await namespaceContainers(sys.config.namespace)).filter((c) => c.Labels['sessionbox.pool'] !== 'true');
  expect(left).toEqual([]);
}

describe('dify-sandbox drop-in, driven the way Dify drives it', () => {
  test('python3: a pandas main returns a dict with Japanese strings; a figure adds nothing to stdout', async () => {
    const code = [
      'def main(rows: list, label: str) -> dict:',
      '    import pandas as pd',
      '    import matplotlib.pyplot as plt',
      '    df = pd.DataFrame(rows)',
      '    df.plot(x="店舗", y="売上")',
      '    plt.show()',
      '    top = df.sort_values("売上", ascending=False)["店舗"].tolist()',
      '    return {"ラベル": label, "合計": int(df["売上"].sum()), "上位": top}',
    ].join('\n');
    const inputs = { rows: [{ 店舗: '東京', 売上: 120 }, { 店舗: '大阪', 売上: 300 }, { 店舗: '名古屋', 売上: 80 }], label: '月次レポート' };
    await expect(executeWorkflowCodeTemplate('python3', code, inputs)).resolves.toEqual({ ラベル: '月次レポート', 合計: 500, 上位: ['大阪', '東京', '名古屋'] });

    // The raw answer: the current dify-sandbox shape, and stdout holds only what the runner printed.
    const runner = PYTHON3_RUNNER.replace('{{code}}', code).replace('{{inputs}}', b64Inputs(inputs));
    const raw = await rawRun({ language: 'python3', code: runner, preload: '', enable_network: true });
    expect(raw.status).toBe(200);
    expect(raw.body).toMatchObject({ code: 0, message: 'success', data: { error: '', exit_code: 0 } });
    expect(Object.keys(raw.body.data).sort()).toEqual(['error', 'exit_code', 'stderr', 'stdout']);
    expect(raw.body.data.stdout).toMatch(/^<<RESULT>>\{\n {4}"\\u30e9\\u30d9\\u30eb": "\\u6708[\s\S]*\}<<RESULT>>\n$/);
    await expectNoContainerLeft();
  });

  test('python3: scipy, scikit-learn, seaborn and statsmodels import and work in a Code node', async () => {
    const code = [
      'def main(xs: list, ys: list) -> dict:',
      '    import numpy as np, seaborn, statsmodels.api as sm',
      '    from scipy import stats',
      '    from sklearn.linear_model import LinearRegression',
      '    m = LinearRegression().fit(np.array(xs).reshape(-1, 1), ys)',
      '    ols = sm.OLS(ys, sm.add_constant(xs)).fit()',
      '    return {"slope": round(float(m.coef_[0]), 6), "ols": round(float(ols.params[1]), 6), "r": round(float(stats.pearsonr(xs, ys)[0]), 6), "sns": bool(seaborn.__version__)}',
    ].join('\n');
    await expect(executeWorkflowCodeTemplate('python3', code, { xs: [1, 2, 3, 4], ys: [3, 5, 7, 9] })).resolves.toEqual({ slope: 2, ols: 2, r: 1, sns: true });
    await expectNoContainerLeft();
  });

  test('python3: a main that raises fails the node with the traceback', async () => {
    const code = ['def main(stock: int) -> dict:', '    if stock <= 0:', '        raise ValueError("在庫がありません")', '    return {"ok": True}'].join('\n');
    const err = await executeWorkflowCodeTemplate('python3', code, { stock: 0 }).catch((e) => e);
    expect(err).toBeInstanceOf(CodeExecutionException);
    expect(err.message).toContain('Traceback');
    expect(err.message).toContain('ValueError: 在庫がありません');
    expect(err.message).toContain('raise ValueError("在庫がありません")');
    await expectNoContainerLeft();
  });

  test('python3: a warning on stderr does not fail the run', async () => {
    const code = [
      'import sys, warnings',
      'def main(x: int) -> dict:',
      '    warnings.warn("この形式は古くなります", DeprecationWarning, stacklevel=1)',
      '    print("note: slow path", file=sys.stderr)',
      '    return {"double": x * 2}',
    ].join('\n');
    await expect(executeWorkflowCodeTemplate('python3', code, { x: 21 })).resolves.toEqual({ double: 42 });
    const runner = PYTHON3_RUNNER.replace('{{code}}', code).replace('{{inputs}}', b64Inputs({ x: 1 }));
    const raw = await rawRun({ language: 'python3', code: runner, preload: '', enable_network: true });
    expect(raw.body.code).toBe(0);
    expect(raw.body.data.error).toBe('');
    expect(raw.body.data.stderr).toContain('この形式は古くなります');
    expect(raw.body.data.stderr).toContain('note: slow path');
    await expectNoContainerLeft();
  });

  test('python3: a run past the time limit fails the node with the timeout named', async () => {
    const code = ['import time', 'def main() -> dict:', '    time.sleep(60)', '    return {}'].join('\n');
    const err = await executeWorkflowCodeTemplate('python3', code, {}).catch((e) => e);
    expect(err).toBeInstanceOf(CodeExecutionException);
    expect(err.message).toMatch(/^timeout: the run did not finish within 4 s/);
    await expectNoContainerLeft();
  });

  test('jinja2: the Template node (python3 with its preload) renders', async () => {
    const template = '{{ title }}:{% for s in stores %} {{ s }}{% endfor %}';
    await expect(executeWorkflowCodeTemplate('jinja2', template, { title: '店舗一覧', stores: ['東京', '大阪'] })).resolves.toEqual({ result: '店舗一覧: 東京 大阪' });
    await expectNoContainerLeft();
  });

  test('nodejs: a JavaScript main runs with node; a throw fails the node with the stack', async () => {
    const code = ['function main({ a, b, label }) {', "  return { sum: a + b, label: label + '!', node: typeof process.versions.node }", '}'].join('\n');
    await expect(executeWorkflowCodeTemplate('javascript', code, { a: 2, b: 40, label: '合計' })).resolves.toEqual({ sum: 42, label: '合計!', node: 'string' });
    const bad = ['function main() {', "  throw new Error('データがありません')", '}'].join('\n');
    const err = await executeWorkflowCodeTemplate('javascript', bad, {}).catch((e) => e);
    expect(err).toBeInstanceOf(CodeExecutionException);
    expect(err.message).toMatch(/^process exited with code 1\n/);
    expect(err.message).toContain('Error: データがありません');
    await expectNoContainerLeft();
  });

  test('an unsupported language: HTTP 400, code -400, and Dify fails the node on the status', async () => {
    const raw = await rawRun({ language: 'ruby', code: 'puts 1', preload: '', enable_network: true });
    expect(raw).toEqual({ status: 400, body: { code: -400, message: 'unsupported language', data: null } });
    await expect(executeCode('ruby', '', 'puts 1')).rejects.toThrow('got status code 400');
  });

  test('a body that does not bind: code -400 in a 200, so Dify shows the message', async () => {
    const raw = await rawRun({ language: 'python3', preload: '' });
    expect(raw.status).toBe(200);
    expect(raw.body).toMatchObject({ code: -400, data: null });
    expect(raw.body.message).toMatch(/^code: /);
  });

  test('a wrong key: 401, and Dify fails the node on the status; /health needs no key', async () => {
    await expect(executeWorkflowCodeTemplate('python3', 'def main() -> dict:\n    return {}', {}, 'dify-sandbox')).rejects.toThrow('got status code 401');
    const health = await fetch(`${sys.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('"ok"');
  });

  test('dependencies (Dify\'s _get_dependencies) and /v1/images say what can be imported; update and refresh succeed', async () => {
    const headers = { 'X-Api-Key': KEY };
    const deps: any = await (await fetch(`${sys.url}/v1/sandbox/dependencies?language=python3`, { headers })).json();
    expect(deps).toMatchObject({ code: 0, message: 'success' });
    const names = (deps.data.dependencies as { name: string; version: string }[]).map((d) => d.name);
    for (const n of ['pandas', 'numpy', 'matplotlib', 'scipy', 'scikit-learn', 'seaborn', 'statsmodels', 'sympy', 'jinja2', 'requests', 'beautifulsoup4', 'lxml', 'pillow', 'openpyxl', 'xlrd']) {
      expect(names).toContain(n);
    }
    const images: any = await (await fetch(`${sys.url}/v1/images`, { headers })).json();
    expect(images.images).toHaveLength(1);
    expect(images.images[0]).toMatchObject({ image: sys.config.image, default: true });
    expect(images.images[0].languages.python3).toMatch(/^3\.\d+\.\d+$/);
    expect(images.images[0].languages.nodejs).toMatch(/^\d+\.\d+\.\d+$/);

    const update = await fetch(`${sys.url}/v1/sandbox/dependencies/update`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ language: 'python3' }),
    });
    expect(await update.json()).toEqual({ code: 0, message: 'success', data: {} });
    const refresh: any = await (await fetch(`${sys.url}/v1/sandbox/dependencies/refresh?language=python3`, { headers })).json();
    expect(refresh.data.dependencies).toEqual(deps.data.dependencies);
    const other = await fetch(`${sys.url}/v1/sandbox/dependencies?language=nodejs`, { headers });
    expect(other.status).toBe(400);
    expect(await other.json()).toEqual({ code: -400, message: 'unsupported language', data: null });
    await expectNoContainerLeft();
  });

  test('a run leaves no record: no session, execution or event log key outlives the call', async () => {
    const redis = new Redis(REDIS_URL);
    try {
      const prefix = `sb:${sys.config.namespace}:`;
      const before = new Set(await redis.keys(`${prefix}*`));
      await expect(executeWorkflowCodeTemplate('python3', 'def main() -> dict:\n    return {"a": 1}', {})).resolves.toEqual({ a: 1 });
      const added = (await redis.keys(`${prefix}*`)).filter((k) => !before.has(k));
      // What a throwaway run may leave is the key's own counters, never a session or an execution.
      expect(added.filter((k) => /:(session|exec|fig):/.test(k))).toEqual([]);
    } finally {
      redis.disconnect();
    }
  });

  test('enable_network (always true from Dify) gets no network unless the operator allows it', async () => {
    const code = 'import os\ndef main() -> dict:\n    return {"interfaces": sorted(os.listdir("/sys/class/net"))}';
    await expect(executeWorkflowCodeTemplate('python3', code, {})).resolves.toEqual({ interfaces: ['lo'] });

    const allowed = await startSystem({ SESSIONBOX_API_KEYS: `dify:${KEY}`, SESSIONBOX_DIFY_ALLOW_NETWORK: 'true' });
    try {
      const runner = PYTHON3_RUNNER.replace('{{code}}', code).replace('{{inputs}}', b64Inputs({}));
      const ask = async (enable_network: boolean) => {
        const res = await fetch(`${allowed.url}/v1/sandbox/run`, {
          method: 'POST',
          headers: { 'X-Api-Key': KEY, 'content-type': 'application/json' },
          body: JSON.stringify({ language: 'python3', code: runner, preload: '', enable_network }),
        });
        const body = (await res.json()) as any;
        expect(body.code).toBe(0);
        expect(body.data.error).toBe('');
        return JSON.parse(extractResult(body.data.stdout)).interfaces as string[];
      };
      const withNet = await ask(true);
      expect(withNet).toContain('lo');
      expect(withNet.length).toBeGreaterThan(1);
      await expect(ask(false)).resolves.toEqual(['lo']);
      expect(await namespaceContainers(allowed.config.namespace)).toEqual([]);
    } finally {
      await allowed.stop();
    }
  });

  test('overload: no capacity left is HTTP 503 code -503, which Dify reports as the service being unavailable', async () => {
    const full = await startSystem({ SESSIONBOX_API_KEYS: `dify:${KEY}`, SESSIONBOX_HOST_CAPACITY: '1' }, { worker: false });
    try {
      const held = await full.http.post('/v1/sessions', {}, { authorization: `Bearer ${KEY}` });
      expect(held.status).toBe(201);
      const runner = PYTHON3_RUNNER.replace('{{code}}', 'def main() -> dict:\n    return {}').replace('{{inputs}}', b64Inputs({}));
      const res = await fetch(`${full.url}/v1/sandbox/run`, {
        method: 'POST',
        headers: { 'X-Api-Key': KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ language: 'python3', code: runner, preload: '', enable_network: true }),
      });
      expect(res.status).toBe(503);
      const body = (await res.json()) as any;
      expect(body).toMatchObject({ code: -503, data: null });
      expect(body.message).toContain('full');
    } finally {
      await full.stop();
    }
  });

  test('configuration: a 30 s default run limit, network off by default', () => {
    const c = loadConfig({});
    expect(c.difyTimeoutMs).toBe(30_000);
    expect(c.difyAllowNetwork).toBe(false);
  });
});
