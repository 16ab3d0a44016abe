import { startSystem, type TestSystem } from './helpers/system';

/**
 * Dify's custom-tool import, re-enacted (api/core/tools/utils/parser.py,
 * ApiBasedToolSchemaParser.parse_openapi_to_tool_bundle): servers[0].url is the tool's base; each
 * operation's own `parameters` become tool parameters (path-item parameters are never read); a
 * request body is resolved through one `$ref` and its top-level `properties` become parameters;
 * nested schemas are not looked into. operationId must match ^[a-zA-Z0-9_-]{1,64}$.
 */
interface DifyParameter {
  name: string;
  type: 'string' | 'number' | 'boolean';
  required: boolean;
  in: string;
}
interface DifyTool {
  operationId: string;
  method: string;
  serverUrl: string;
  parameters: DifyParameter[];
}

function difyType(schema: any): DifyParameter['type'] {
  const t = schema?.type;
  return t === 'integer' || t === 'number' ? 'number' : t === 'boolean' ? 'boolean' : 'string';
}

function difyImport(doc: any): { tools: DifyTool[]; problems: string[] } {
  const problems: string[] = [];
  if (!doc.servers?.length) throw new Error('No server found in the openapi yaml.');
  const server = doc.servers[0].url as string;
  const host = new URL(server).hostname;
  if (/^(localhost|127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|0\.0\.0\.0|\[?::1\]?$)/.test(host)) {
    problems.push(`servers[0].url ${server} is a localhost/private address (Dify's SSRF proxy refuses it by default)`);
  }
  const tools: DifyTool[] = [];
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    if (item.parameters) problems.push(`${path}: path-level parameters (Dify reads only each operation's own)`);
    for (const method of ['get', 'post', 'put', 'delete', 'patch', 'head', 'options', 'trace']) {
      const op = item[method];
      if (!op) continue;
      const where = `${method.toUpperCase()} ${path}`;
      if (!/^[a-zA-Z0-9_-]{1,64}$/.test(op.operationId ?? '')) problems.push(`${where}: operationId ${op.operationId} does not match ^[a-zA-Z0-9_-]{1,64}$`);
      const parameters: DifyParameter[] = (op.parameters ?? []).map((p: any) => ({ name: p.name, type: difyType(p.schema), required: !!p.required, in: p.in }));
      for (const content of Object.values<any>(op.requestBody?.content ?? {})) {
        let schema = content.schema;
        if (!schema) continue;
        if (schema.$ref) {
          let root: any = doc;
          for (const k of String(schema.$ref).split('/').slice(1)) root = root[k];
          schema = root;
        }
        const props = schema.properties;
        if (schema.type === 'object' && !props) problems.push(`${where}: an object body without top-level properties (Dify would give the model no parameters)`);
        for (const [name, prop] of Object.entries<any>(props ?? {})) {
          parameters.push({ name, type: difyType(prop), required: (schema.required ?? []).includes(name), in: 'body' });
        }
      }
      tools.push({ operationId: op.operationId, method, serverUrl: server + path, parameters });
    }
  }
  return { tools, problems };
}

/** Operations whose answer is bytes or a stream by design (a figure, a file, SSE); every other one answers JSON. */
const NOT_JSON = new Set(['getFigure', 'getSessionFile', 'streamExecutionEvents', 'deleteSessionFile']);

describe('Dify custom-tool import of /openapi.json', () => {
  let sys: TestSystem;
  beforeAll(async () => {
    sys = await startSystem({ SESSIONBOX_PUBLIC_URL: 'https://sessionbox.example.com' }, { worker: false });
  });
  afterAll(async () => {
    await sys?.stop();
  });

  test('with SESSIONBOX_PUBLIC_URL the document passes every import rule; execute takes the session id as a tool parameter', async () => {
    const doc = (await sys.http.get('/openapi.json')).body;
    expect(doc.servers).toEqual([{ url: 'https://sessionbox.example.com' }]);
    const { tools, problems } = difyImport(doc);
    expect(problems).toEqual([]);
    expect(tools.length).toBeGreaterThan(10);

    for (const path of Object.keys(doc.paths)) {
      for (const [method, op] of Object.entries<any>(doc.paths[path])) {
        if (NOT_JSON.has(op.operationId)) continue;
        const ok = Object.entries<any>(op.responses).filter(([status]) => status.startsWith('2'));
        const json = ok.some(([, r]) => r.content?.['application/json']);
        expect(`${method} ${path} ${json ? 'answers JSON' : 'answers no JSON'}`).toBe(`${method} ${path} answers JSON`);
      }
    }

    // The LLM tool: code and session_id are flat, typed tool parameters.
    const tool = tools.find((t) => t.operationId === 'execute_python')!;
    expect(tool.serverUrl).toBe('https://sessionbox.example.com/v1/tools/execute_python');
    expect(tool.parameters).toEqual(
      expect.arrayContaining([
        { name: 'code', type: 'string', required: true, in: 'body' },
        { name: 'session_id', type: 'string', required: false, in: 'body' },
      ]),
    );
    // The REST execute: the session id is a path parameter Dify fills from the tool's parameters.
    const exec = tools.find((t) => t.operationId === 'executeCode')!;
    expect(exec.parameters).toEqual(
      expect.arrayContaining([
        { name: 'id', type: 'string', required: true, in: 'path' },
        { name: 'code', type: 'string', required: true, in: 'body' },
      ]),
    );
  });

  test('without SESSIONBOX_PUBLIC_URL the server entry says how to set it (Dify would refuse the localhost address)', async () => {
    const local = await startSystem({}, { worker: false });
    try {
      const doc = (await local.http.get('/openapi.json')).body;
      expect(doc.servers[0].url).toBe(local.url);
      expect(doc.servers[0].description).toContain('SESSIONBOX_PUBLIC_URL');
      expect(difyImport(doc).problems).toEqual([expect.stringContaining('localhost/private address')]);
    } finally {
      await local.stop();
    }
  });
});
