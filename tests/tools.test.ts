import {
  TOOL_NAME,
  buildToolText,
  executePythonTool,
  parseToolCall,
  shareBudget,
  trimMiddle,
  type Execution,
} from '@sessionbox/core';
import { namespaceContainers, pngSize, startSystem, stopExpectingNoLeak, useSystem, type TestSystem } from './helpers/system';

const OPTS = { timeoutMs: 30_000, ttlSeconds: 600 };

/** Every object in an OpenAI strict-mode schema must list all its properties as required and forbid others. */
function strictModeProblems(schema: any, path = '$'): string[] {
  const out: string[] = [];
  if (schema && typeof schema === 'object') {
    if (schema.type === 'object') {
      const props = Object.keys(schema.properties ?? {});
      if (schema.additionalProperties !== false) out.push(`${path}: additionalProperties must be false`);
      if (JSON.stringify([...(schema.required ?? [])].sort()) !== JSON.stringify([...props].sort())) out.push(`${path}: every property must be required`);
      for (const p of props) out.push(...strictModeProblems(schema.properties[p], `${path}.${p}`));
    }
    if ('$schema' in schema) out.push(`${path}: no $schema`);
  }
  return out;
}

function execution(over: Partial<Execution> = {}): Execution {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    sessionId: '00000000-0000-4000-8000-000000000002',
    status: 'succeeded',
    stdout: '',
    stderr: '',
    result: null,
    error: null,
    figures: [],
    files: [],
    queuedAt: new Date(0).toISOString(),
    startedAt: null,
    finishedAt: null,
    durationMs: null,
    timeoutMs: 30_000,
    restarted: false,
    cause: null,
    usage: null,
    stdoutTruncated: false,
    stderrTruncated: false,
    notes: [],
    ...over,
  };
}

describe('tool definition and call shapes (pure)', () => {
  test('the OpenAI definition is valid in strict mode and nullable session_id is a type array', () => {
    const t = executePythonTool('openai', OPTS);
    expect(t).toMatchObject({ type: 'function', function: { name: 'execute_python', strict: true } });
    expect(t.function.parameters).toEqual({
      type: 'object',
      properties: {
        code: { type: 'string', description: expect.any(String) },
        session_id: { type: ['string', 'null'], description: expect.any(String) },
      },
      required: ['code', 'session_id'],
      additionalProperties: false,
    });
    expect(strictModeProblems(t.function.parameters)).toEqual([]);
  });

  test('the description tells the model what it needs to know; Anthropic gets the same as input_schema', () => {
    const d = executePythonTool('openai', OPTS).function.description;
    for (const s of ['session_id', 'plt.show()', '/work', 'uploaded', 'numpy', 'pandas', 'scipy', 'openpyxl', 'Japanese', 'pip install', 'no network', '30 seconds']) {
      expect(d).toContain(s);
    }
    const a = executePythonTool('anthropic', OPTS);
    expect(Object.keys(a).sort()).toEqual(['description', 'input_schema', 'name']);
    expect(a.input_schema).toEqual(executePythonTool('openai', OPTS).function.parameters);
  });

  test('reads bare arguments, OpenAI tool_calls (plain or wrapped), Responses function_call and Anthropic tool_use', () => {
    const args = { code: 'print(1)', session_id: null };
    expect(parseToolCall(args)).toEqual({ ok: true, shape: 'arguments', toolCallId: null, args: { code: 'print(1)', sessionId: null } });
    const oa = { id: 'call_1', type: 'function', function: { name: TOOL_NAME, arguments: JSON.stringify({ code: 'x', session_id: 'abc' }) } };
    expect(parseToolCall(oa)).toMatchObject({ ok: true, shape: 'openai', toolCallId: 'call_1', args: { code: 'x', sessionId: 'abc' } });
    expect(parseToolCall({ tool_call: oa })).toMatchObject({ ok: true, shape: 'openai', toolCallId: 'call_1' });
    const resp = { type: 'function_call', call_id: 'fc_1', name: TOOL_NAME, arguments: '{"code":"y"}' };
    expect(parseToolCall(resp)).toMatchObject({ ok: true, shape: 'openai_responses', toolCallId: 'fc_1', args: { code: 'y', sessionId: null } });
    const an = { type: 'tool_use', id: 'toolu_1', name: TOOL_NAME, input: { code: 'z', session_id: '' } };
    expect(parseToolCall(an)).toMatchObject({ ok: true, shape: 'anthropic', toolCallId: 'toolu_1', args: { code: 'z', sessionId: null } });
  });

  test('bad calls become errors the model can act on, keeping the call id', () => {
    const bad = parseToolCall({ id: 'call_2', type: 'function', function: { name: TOOL_NAME, arguments: '{"code": "print(1)' } });
    expect(bad).toMatchObject({ ok: false, shape: 'openai', toolCallId: 'call_2', error: { code: 'malformed_arguments' } });
    expect(!bad.ok && bad.error.message).toMatch(/not valid JSON.*\\n/);
    expect(parseToolCall({ type: 'tool_use', id: 't', name: 'run_shell', input: {} })).toMatchObject({ ok: false, error: { code: 'unknown_tool', message: expect.stringContaining('execute_python') } });
    expect(parseToolCall({})).toMatchObject({ ok: false, error: { code: 'invalid_arguments', message: expect.stringContaining('Missing the required argument "code"') } });
    expect(parseToolCall({ code: 42 })).toMatchObject({ ok: false, error: { message: expect.stringContaining('not a number') } });
    expect(parseToolCall({ code: 'x', session_id: 7 })).toMatchObject({ ok: false, error: { message: expect.stringContaining('session_id') } });
    expect(parseToolCall([1, 2])).toMatchObject({ ok: false, error: { message: expect.stringContaining('not an array') } });
  });

  test('trimMiddle keeps head and tail with a marker; never splits a surrogate pair', () => {
    const lines = Array.from({ length: 1000 }, (_, i) => `line ${i}`).join('\n');
    const t = trimMiddle(lines, 300);
    expect(t.length).toBeLessThanOrEqual(300);
    expect(t.startsWith('line 0\n')).toBe(true);
    expect(t.endsWith('line 999')).toBe(true);
    expect(t).toMatch(/… \[sessionbox: \d+ lines cut\] …/);
    const one = 'x'.repeat(5000);
    expect(trimMiddle(one, 200)).toMatch(/^x+… \[sessionbox: \d+ chars cut\] …x+$/);
    const emoji = '😀'.repeat(500);
    const e = trimMiddle(emoji, 201);
    expect(e.length).toBeLessThanOrEqual(201);
    expect(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(e)).toBe(false);
    expect(shareBudget([10, 1000, 5000], 1000)).toEqual([10, 495, 495]);
  });

  test('tool text: output, result, traceback tail, figures, files, notes, session id, within the budget', () => {
    const tb = ['Traceback (most recent call last):', ...Array.from({ length: 400 }, (_, i) => `  File "<cell>", line ${i}, in f${i}`), 'RecursionError: maximum recursion depth exceeded'].join('\n');
    const text = buildToolText(
      execution({
        status: 'failed',
        stdout: 'a'.repeat(10_000),
        result: null,
        error: { name: 'RecursionError', value: 'maximum recursion depth exceeded', traceback: tb },
        figures: [{ id: 'f1', mimeType: 'image/png', url: 'http://h/v1/sessions/s/figures/f1', width: 640, height: 480 }],
        files: [{ path: 'out.csv', size: 2048, mimeType: 'text/csv', url: 'http://h/v1/sessions/s/files/out.csv' }],
        restarted: true,
        cause: 'oom',
      }),
      { budget: 1500, sessionId: 'S-1' },
    );
    expect(text.length).toBeLessThanOrEqual(1500);
    expect(text).toContain('RecursionError: maximum recursion depth exceeded');
    expect(text).toContain('Traceback (most recent call last):');
    expect(text).toMatch(/\[sessionbox: \d+ lines cut\]/);
    expect(text).toMatch(/\[sessionbox: \d+ chars cut\]/);
    expect(text).toContain('figure 1 (640x480 px, shown to the user): http://h/v1/sessions/s/figures/f1');
    expect(text).toContain('file /work/out.csv (2.0 KiB): http://h/v1/sessions/s/files/out.csv');
    expect(text).toContain('ran out of memory');
    expect(text).toContain('interpreter restarted');
    expect(text.trimEnd().split('\n').at(-1)).toMatch(/^session_id: S-1 /);
    const timedOut = buildToolText(execution({ status: 'timed_out', cause: 'timeout', timeoutMs: 5000 }), { budget: 4000, sessionId: 'S' });
    expect(timedOut).toContain('stopped after 5 s (time limit)');
    expect(buildToolText(execution(), { budget: 4000, sessionId: 'S' })).toContain('no output');
  });
});

describe('tool endpoints (real api + worker + Docker)', () => {
  const sys = useSystem();

  test('GET /v1/tools gives the OpenAI form by default, the Anthropic form on request', async () => {
    const oa = await sys.http.get('/v1/tools');
    expect(oa.status).toBe(200);
    expect(oa.body.tools).toHaveLength(1);
    expect(oa.body.tools[0]).toMatchObject({ type: 'function', function: { name: 'execute_python', strict: true } });
    const an = await sys.http.get('/v1/tools?format=anthropic');
    expect(an.body.tools[0]).toMatchObject({ name: 'execute_python', input_schema: { type: 'object' } });
    expect((await sys.http.get('/v1/tools?format=gemini')).status).toBe(400);
  });

  test('an OpenAI tool_call makes a session; an Anthropic tool_use continues in it; figures and files come back as URLs', async () => {
    const first = await sys.http.post('/v1/tools/execute_python', {
      id: 'call_abc',
      type: 'function',
      function: { name: 'execute_python', arguments: JSON.stringify({ code: "x = 21\nprint('売上', x)", session_id: null }) },
    });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ ok: true, session_created: true, tool_call_id: 'call_abc', execution: { status: 'succeeded', stdout: '売上 21\n' } });
    const sid = first.body.session_id;
    expect(first.body.text).toContain('売上 21');
    expect(first.body.text).toContain(`session_id: ${sid}`);
    expect(first.body.openai_message).toEqual({ role: 'tool', tool_call_id: 'call_abc', content: first.body.text });
    expect(first.body.anthropic_content).toBeUndefined();

    const code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('推移')\nplt.show()\nopen('out.csv', 'w').write('a,b\\n1,2\\n')\nx * 2";
    const second = await sys.http.post('/v1/tools/execute_python', { type: 'tool_use', id: 'toolu_1', name: 'execute_python', input: { code, session_id: sid } });
    expect(second.body).toMatchObject({ ok: true, session_id: sid, session_created: false, anthropic_content: { type: 'tool_result', tool_use_id: 'toolu_1', is_error: false } });
    expect(second.body.text).toContain('result: 42');
    const fig = /figure 1 \(\d+x\d+ px, shown to the user\): (\S+)/.exec(second.body.text);
    expect(fig).not.toBeNull();
    const png = await fetch(fig![1]);
    expect(png.status).toBe(200);
    expect(pngSize(Buffer.from(await png.arrayBuffer())).width).toBeGreaterThan(100);
    const file = /file \/work\/out\.csv \((\d+) B\): (\S+)/.exec(second.body.text);
    expect(file).not.toBeNull();
    expect(file![1]).toBe('8');
    const csv = await fetch(file![2]);
    expect(csv.status).toBe(200);
    expect(await csv.text()).toBe('a,b\n1,2\n');
    expect(second.body.anthropic_content.content).toBe(second.body.text);
    expect((await sys.http.delete(`/v1/sessions/${sid}`)).status).toBe(204);
  });

  test('errors, restarts and long output come back as compact text within ?budget=', async () => {
    const err = await sys.http.post('/v1/tools/execute_python', { code: 'def f(n):\n    return g(n + 1)\ndef g(n):\n    return f(n + 1)\nf(0)' });
    expect(err.status).toBe(200);
    expect(err.body.ok).toBe(false);
    expect(err.body.text).toContain('RecursionError');
    expect(err.body.text).toMatch(/\[sessionbox: \d+ lines cut\]/);
    expect(err.body.text.length).toBeLessThanOrEqual(sys.config.toolTextBudget);
    const sid = err.body.session_id;

    const long = await sys.http.post('/v1/tools/execute_python?budget=500', { code: "print('\\n'.join(f'row {i}' for i in range(5000)))", session_id: sid });
    expect(long.body.ok).toBe(true);
    expect(long.body.text.length).toBeLessThanOrEqual(500);
    expect(long.body.text).toContain('row 0\n');
    expect(long.body.text).toContain('row 4999');
    expect(long.body.execution.stdout.length).toBeGreaterThan(30_000);

    const died = await sys.http.post('/v1/tools/execute_python', { code: 'import os\nos._exit(1)', session_id: sid });
    expect(died.body.ok).toBe(false);
    expect(died.body.text).toContain('interpreter restarted');
    expect((await sys.http.delete(`/v1/sessions/${sid}`)).status).toBe(204);
  });

  test('bad input is a 200 tool result with ok:false the model can act on, and makes nothing', async () => {
    const before = (await namespaceContainers(sys.config.namespace)).length;
    const missing = await sys.http.post('/v1/tools/execute_python', { session_id: null });
    expect(missing.status).toBe(200);
    expect(missing.body).toMatchObject({ ok: false, session_id: null, execution: null, error: { code: 'invalid_arguments' } });
    expect(missing.body.text).toContain('"code"');

    const malformed = await sys.http.post('/v1/tools/execute_python', { tool_call: { id: 'call_x', type: 'function', function: { name: 'execute_python', arguments: '{"code": "print(' } } });
    expect(malformed.body).toMatchObject({ ok: false, error: { code: 'malformed_arguments' }, openai_message: { role: 'tool', tool_call_id: 'call_x' } });

    const unknownTool = await sys.http.post('/v1/tools/execute_python', { type: 'tool_use', id: 'toolu_2', name: 'browse', input: { url: 'x' } });
    expect(unknownTool.body).toMatchObject({ ok: false, error: { code: 'unknown_tool' }, anthropic_content: { tool_use_id: 'toolu_2', is_error: true } });

    const nonString = await sys.http.post('/v1/tools/execute_python', { code: ['print(1)'] });
    expect(nonString.body).toMatchObject({ ok: false, error: { code: 'invalid_arguments' } });

    for (const id of ['00000000-0000-4000-8000-00000000dead', 'not-a-session']) {
      const unknown = await sys.http.post('/v1/tools/execute_python', { code: 'print(1)', session_id: id });
      expect(unknown.body).toMatchObject({ ok: false, session_id: id, error: { code: 'session_not_found' } });
      expect(unknown.body.text).toContain('session_id null');
    }
    expect((await namespaceContainers(sys.config.namespace)).length).toBe(before);

    const s = await sys.http.createSession();
    expect((await sys.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    const gone = await sys.http.post('/v1/tools/execute_python', { code: 'print(1)', session_id: s.id });
    expect(gone.status).toBe(200);
    expect(gone.body).toMatchObject({ ok: false, error: { code: 'session_expired' } });
    expect(gone.body.text).toMatch(/has ended.*session_id null to start a new session/);

    const notJson = await sys.http.post('/v1/tools/execute_python', 'code=1', { 'content-type': 'text/plain' });
    expect(notJson.status).toBe(415);
  });
});

describe('OpenAPI document', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startSystem({}, { worker: false });
  });
  afterAll(() => sys && stopExpectingNoLeak(sys));

  test('documents the tool, MCP and drop-in paths in a form Dify can import as a custom tool', async () => {
    const doc = (await sys.http.get('/openapi.json')).body;
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/tools', '/v1/tools/execute_python', '/mcp', '/execute', '/v1/run/']));
    const op = doc.paths['/v1/tools/execute_python'].post;
    expect(op.operationId).toBe('execute_python');
    // Dify resolves one $ref level, then reads each property's `type` as a single string
    const ref: string = op.requestBody.content['application/json'].schema.$ref;
    const body = ref.split('/').slice(1).reduce((o: any, k: string) => o[k], doc);
    expect(body.required).toEqual(['code']);
    expect(body.properties.code.type).toBe('string');
    for (const path of ['/v1/tools/execute_python', '/execute', '/v1/run/']) {
      const o = doc.paths[path].post;
      let s = o.requestBody.content['application/json'].schema;
      if (s.$ref) s = s.$ref.split('/').slice(1).reduce((x: any, k: string) => x[k], doc);
      const types = [...Object.values<any>(s.properties).map((p) => p.type), ...(o.parameters ?? []).map((p: any) => p.schema?.type)];
      expect(types.length).toBeGreaterThan(0);
      expect({ path, types: types.map((t) => typeof t) }).toEqual({ path, types: types.map(() => 'string') });
    }
  });
});
