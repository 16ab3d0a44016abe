import { spawnSync } from 'node:child_process';
import { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { ExecuteBody } from '@sessionbox/core';
import { features } from '../apps/api/src/routers';
import { startSystem, type TestSystem } from './helpers/system';

/**
 * swagger-parser (3.1-aware) loads an ES-module-only dependency that jest's CommonJS loader cannot,
 * so it runs in a plain node child (Node ≥ 20.19 requires ESM natively).
 */
function swaggerValidate(doc: unknown): { ok: boolean; message: string } {
  const script = `const SP = require('@apidevtools/swagger-parser');
let s = ''; process.stdin.on('data', (d) => (s += d)).on('end', () =>
  SP.validate(JSON.parse(s)).then(() => console.log('valid'), (e) => { console.log(e.message); process.exit(1); }));`;
  const r = spawnSync(process.execPath, ['-e', script], { input: JSON.stringify(doc), cwd: process.cwd(), encoding: 'utf8' });
  return { ok: r.status === 0, message: (r.stdout + r.stderr).trim() };
}

let sys: TestSystem;
let doc: any;

const METHODS = ['get', 'post', 'put', 'patch', 'delete', 'head', 'options', 'trace'];
const operations = (d: any) =>
  Object.entries(d.paths as Record<string, any>).flatMap(([path, item]) =>
    METHODS.filter((m) => item[m]).map((m) => ({ path, method: m, op: item[m] })),
  );

beforeAll(async () => {
  sys = await startSystem({}, { worker: false });
  const res = await sys.http.get('/openapi.json');
  expect(res.status).toBe(200);
  doc = res.body;
});
afterAll(async () => {
  await sys.stop();
});

describe('GET /openapi.json', () => {
  test('is a valid OpenAPI 3.1 document (swagger-parser) with the request base URL as server', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(swaggerValidate(doc)).toEqual({ ok: true, message: 'valid' });
    // The validator does catch a broken document.
    const broken = structuredClone(doc);
    delete broken.components.schemas.Error;
    expect(swaggerValidate(broken)).toMatchObject({ ok: false, message: expect.stringContaining('#/components/schemas/Error') });
    expect(doc.servers).toEqual([{ url: sys.url, description: expect.stringContaining('SESSIONBOX_PUBLIC_URL') }]);
    expect(doc.components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  test('lint: every operation has a unique operationId and a summary; every 4xx/5xx answers with the Error schema', () => {
    const ops = operations(doc);
    expect(ops.length).toBeGreaterThanOrEqual(9);
    const ids = ops.map((o) => o.op.operationId);
    for (const o of ops) {
      expect([o.path, o.method, typeof o.op.operationId]).toEqual([o.path, o.method, 'string']);
      expect([o.path, o.method, typeof o.op.summary]).toEqual([o.path, o.method, 'string']);
    }
    expect(new Set(ids).size).toBe(ids.length);
    const errors = ops.flatMap((o) =>
      Object.entries(o.op.responses as Record<string, any>)
        .filter(([status]) => /^[45]/.test(status))
        .map(([status, r]) => ({ at: `${o.method} ${o.path} ${status}`, schema: r.content?.['application/json']?.schema })),
    );
    expect(errors.length).toBeGreaterThan(ops.length);
    // dify-sandbox's routes answer its own envelope, which Dify reads (apps/api/src/routes/dify-sandbox.ts).
    const own = (e: { at: string; schema?: { $ref?: string } }) => / \/v1\/sandbox\//.test(e.at) && e.schema?.$ref === '#/components/schemas/DifySandboxError';
    expect(errors.filter((e) => e.schema?.$ref !== '#/components/schemas/Error' && !own(e)).map((e) => e.at)).toEqual([]);
  });

  test('lists the core routes and every feature\'s own paths', () => {
    const have = operations(doc).map((o) => `${o.method} ${o.path}`);
    expect(have).toEqual(
      expect.arrayContaining([
        'post /v1/sessions',
        'get /v1/sessions',
        'get /v1/sessions/{id}',
        'delete /v1/sessions/{id}',
        'post /v1/sessions/{id}/executions',
        'get /v1/sessions/{id}/executions/{executionId}',
        'get /v1/sessions/{id}/executions/{executionId}/events',
        'get /v1/sessions/{id}/figures/{figureId}',
        'get /healthz',
      ]),
    );
    const run = doc.paths['/v1/sessions/{id}/executions'].post;
    expect(run.parameters.map((p: any) => `${p.in}:${p.name}`)).toEqual(['path:id', 'query:wait']);
    expect(Object.keys(run.responses['200'].content)).toEqual(['application/json', 'text/event-stream']);
    expect(run.responses['202']).toBeDefined();
    expect(doc.paths['/v1/sessions/{id}/figures/{figureId}'].get.responses['200'].content['image/png']).toBeDefined();
    for (const f of features.filter((x) => x.openapi)) {
      const reg = new OpenAPIRegistry();
      f.openapi!(reg);
      const paths = reg.definitions.flatMap((d) => (d.type === 'route' ? [`${d.route.method} ${d.route.path}`] : []));
      expect({ feature: f.name, missing: paths.filter((p) => !have.includes(p)) }).toEqual({ feature: f.name, missing: [] });
    }
  });

  test('request bodies come from the validating zod schemas (strict, same fields)', () => {
    const s = doc.components.schemas.ExecuteRequest;
    expect(Object.keys(s.properties).sort()).toEqual(Object.keys(ExecuteBody.shape).sort());
    expect(s.required).toEqual(['code']);
    expect(s.additionalProperties).toBe(false);
    expect(s.properties.timeoutMs.minimum).toBe(100);
  });

  test('servers come from SESSIONBOX_PUBLIC_URL when it is set', async () => {
    const pub = await startSystem({ SESSIONBOX_PUBLIC_URL: 'https://sandbox.example.com/api' }, { worker: false });
    try {
      const r = await pub.http.get('/openapi.json');
      expect(r.body.servers).toEqual([{ url: 'https://sandbox.example.com/api' }]);
    } finally {
      await pub.stop();
    }
  });
});

describe('GET /docs', () => {
  test('renders Swagger UI from local assets only (no CDN)', async () => {
    const page = await sys.http.get('/docs');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = page.raw.toString('utf8');
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(urls.length).toBeGreaterThanOrEqual(4);
    for (const u of urls) {
      expect(u.startsWith(`${sys.url}/docs/`)).toBe(true);
      const r = await fetch(u);
      expect([u, r.status]).toEqual([u, 200]);
      expect((await r.arrayBuffer()).byteLength).toBeGreaterThan(100);
    }
    const init = await sys.http.get('/docs/init.js');
    expect(init.raw.toString('utf8')).toContain(JSON.stringify(`${sys.url}/openapi.json`));
    expect((await sys.http.get('/docs/assets/index.html')).status).toBe(404);
  });
});
