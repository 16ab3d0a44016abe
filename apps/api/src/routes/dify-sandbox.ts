import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { Router, type NextFunction, type Request, type Response } from 'express';
import { ErrorBody, isSessionboxError, type ExecutionRecord } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { baseUrl, caller } from '../http';
import { runThrowaway } from '../tool-runs';
import { ImageCatalog, ImageDescription } from '../image-catalog';

/**
 * dify-sandbox's HTTP API, served exactly, so that Dify's Code and Template nodes run here
 * (Dify's api/core/helper/code_executor/code_executor.py is the client). Every run is a
 * throwaway session: a warm container when the pool has one, removed before the answer leaves.
 *
 * Envelope `{ code, message, data }`; what dify-sandbox answers, and so what Dify reads:
 * - a body it cannot bind: HTTP 200, code -400 (Dify shows the message);
 * - an unsupported language: HTTP 400, code -400;
 * - overload (no capacity, a key's limit): HTTP 503, code -503 (Dify: "service is unavailable");
 * - the runner failed (not the user's code): HTTP 200, code -500;
 * - a wrong key: 401 (sessionbox's usual error body; Dify only reads the status).
 * The user's code failing is a success envelope whose `data.error` says why; `data.error` stays
 * empty on success whatever went to stderr.
 */

export const DifyRunBody = z
  .object({
    language: z.string().min(1).meta({ description: '`python3` or `nodejs`.' }),
    code: z.string().min(1),
    preload: z.string().default('').meta({ description: 'Run before `code`, in the same process (Dify sends jinja2 warm-up here).' }),
    enable_network: z.boolean().default(false).meta({ description: 'Honoured only when the operator sets SESSIONBOX_DIFY_ALLOW_NETWORK=true.' }),
  })
  .meta({ id: 'DifySandboxRunRequest' });

const DifyLanguageQuery = z.object({ language: z.string().min(1) });

const RunData = z
  .object({ stdout: z.string(), stderr: z.string(), error: z.string(), exit_code: z.number().int() })
  .meta({ id: 'DifySandboxRunData' });

const envelope = <T extends z.ZodType>(data: T, id: string) =>
  z.object({ code: z.number().int(), message: z.string(), data }).meta({ id });

const RunEnvelope = envelope(RunData.nullable(), 'DifySandboxRunResponse');
const DependenciesEnvelope = envelope(
  z.object({ dependencies: z.array(z.object({ name: z.string(), version: z.string() })) }).nullable(),
  'DifySandboxDependenciesResponse',
);

/** dify-sandbox's error answer; its routes keep it for 4xx/5xx (the house `Error` body would break Dify's reading). */
const DifyError = z
  .object({ code: z.number().int().meta({ example: -400 }), message: z.string(), data: z.null() })
  .meta({ id: 'DifySandboxError' });

export type DifyRunData = z.infer<typeof RunData>;

/** The envelope's error side, as dify-sandbox's ErrorResponse makes it (`data: null`). */
class DifyFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const ok = (data: unknown) => ({ code: 0, message: 'success', data });

/** Runs `node -` under the session's Python, with the code on stdin: same container, limits and seccomp filter. */
export function nodeRunner(source: string): string {
  const b64 = Buffer.from(source, 'utf8').toString('base64');
  return [
    'import base64 as _b64, subprocess as _sp, sys as _sys',
    'class NodeExit(Exception):',
    '    pass',
    `_p = _sp.run(["node", "-"], input=_b64.b64decode("${b64}"), stdout=_sp.PIPE, stderr=_sp.PIPE)`,
    '_sys.stdout.write(_p.stdout.decode("utf-8", "replace"))',
    '_sys.stderr.write(_p.stderr.decode("utf-8", "replace"))',
    'if _p.returncode != 0:',
    '    raise NodeExit(_p.returncode)',
    '',
  ].join('\n');
}

function joinPreload(preload: string, code: string): string {
  return preload.trim() ? `${preload}\n${code}` : code;
}

/** What the run says in dify-sandbox's `data`: `error` only when it failed. */
export function toRunData(rec: ExecutionRecord, language: 'python3' | 'nodejs', memoryMb: number): DifyRunData {
  const base = { stdout: rec.stdout, stderr: rec.stderr };
  if (rec.status === 'succeeded') return { ...base, error: '', exit_code: 0 };
  if (rec.status === 'timed_out' || rec.cause === 'timeout') {
    return { ...base, error: `timeout: the run did not finish within ${Math.round(rec.timeoutMs / 1000)} s and was stopped`, exit_code: -1 };
  }
  if (rec.cause === 'oom') return { ...base, error: `the run was killed: out of memory (limit ${memoryMb} MiB)`, exit_code: 137 };
  if (rec.cause) return { ...base, error: `the run was stopped (${rec.cause})`, exit_code: -1 };
  if (language === 'nodejs' && rec.error?.name === 'NodeExit') {
    const exit = Number(rec.error.value) || 1;
    return { ...base, error: `process exited with code ${exit}\n${rec.stderr}`, exit_code: exit };
  }
  const traceback = rec.error ? rec.error.traceback || `${rec.error.name}: ${rec.error.value}\n` : '';
  // As a python3 process would: the traceback also ends its stderr.
  return { stdout: rec.stdout, stderr: rec.stderr + traceback, error: `process exited with code 1\n${rec.stderr}${traceback}`, exit_code: 1 };
}

function languageOf(value: string): 'python3' | 'nodejs' {
  if (value === 'python3' || value === 'nodejs') return value;
  throw new DifyFailure(400, -400, 'unsupported language');
}

function bind<S extends z.ZodType>(schema: S, data: unknown): z.infer<S> {
  const r = schema.safeParse(data ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new DifyFailure(200, -400, `${issue.path.join('.') || 'body'}: ${issue.message}`);
}

/** Any error of these routes as the envelope. */
function toFailure(err: unknown): DifyFailure {
  if (err instanceof DifyFailure) return err;
  if (isSessionboxError(err)) {
    if (err.status === 503 || err.status === 429) return new DifyFailure(503, -503, err.message);
    if (err.status === 413 || err.status === 400) return new DifyFailure(200, -400, err.message);
    if (err.status === 401 || err.status === 403) return new DifyFailure(err.status, -err.status, err.message);
    return new DifyFailure(200, -500, err.message);
  }
  return new DifyFailure(200, -500, `runner failure: ${(err as Error)?.message ?? String(err)}`);
}

export function difySandboxRouter(ctx: ApiContext): Router {
  const r = Router();
  const catalog = new ImageCatalog(ctx);

  r.get('/health', (_req, res) => void res.json('ok'));

  r.post('/v1/sandbox/run', async (req, res) => {
    const body = bind(DifyRunBody, req.body);
    const language = languageOf(body.language);
    const aborter = new AbortController();
    res.on('close', () => aborter.abort());
    const source = joinPreload(body.preload, body.code);
    const code = language === 'nodejs' ? nodeRunner(source) : source;
    const data = await runThrowaway(
      ctx,
      {
        code,
        caller: caller(req),
        base: baseUrl(req, ctx.config.publicUrl),
        signal: aborter.signal,
        metadata: { via: 'dify-sandbox', language },
        timeoutMs: ctx.config.difyTimeoutMs,
        // Dify always asks; only an operator's SESSIONBOX_DIFY_ALLOW_NETWORK=true grants it.
        network: body.enable_network && ctx.config.difyAllowNetwork,
      },
      async ({ record, finished, session }) => {
        if (!finished) throw new DifyFailure(200, -500, `runner failure: the run had not ended (${record.status})`);
        return toRunData(record, language, session.limits.memoryMb);
      },
    );
    if (aborter.signal.aborted) return;
    res.json(ok(data));
  });

  r.get('/v1/sandbox/dependencies', async (req, res) => {
    const { language } = bind(DifyLanguageQuery, req.query);
    if (language !== 'python3') throw new DifyFailure(400, -400, 'unsupported language');
    res.json(ok({ dependencies: (await catalog.describe(caller(req))).packages }));
  });

  // The image is fixed: nothing to install or refresh, so both answer as after a successful one.
  r.post('/v1/sandbox/dependencies/update', (req, res) => {
    const { language } = bind(DifyLanguageQuery, req.body);
    if (language !== 'python3') throw new DifyFailure(400, -400, 'unsupported language');
    res.json(ok({}));
  });

  r.get('/v1/sandbox/dependencies/refresh', async (req, res) => {
    const { language } = bind(DifyLanguageQuery, req.query);
    if (language !== 'python3') throw new DifyFailure(400, -400, 'unsupported language');
    res.json(ok({ dependencies: (await catalog.describe(caller(req))).packages }));
  });

  r.get('/v1/images', async (req, res) => {
    res.json({ images: [await catalog.describe(caller(req))] });
  });

  r.use('/v1/sandbox', (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const f = toFailure(err);
    if (f.code === -500) ctx.logger.warn({ err: (err as Error)?.message }, 'dify-sandbox run failed in the runner');
    if (f.status === 401 || f.status === 403) return next(err);
    res.status(f.status).json({ code: f.code, message: f.message, data: null });
  });

  return r;
}

export function registerDifySandboxPaths(registry: OpenAPIRegistry) {
  const json = <T extends z.ZodType>(schema: T) => ({ 'application/json': { schema } });
  const unsupported = { description: 'Unsupported language (`code: -400`).', content: json(DifyError) };
  const badKey = { description: 'The key is not valid (sessionbox\'s error body; Dify reads only the status).', content: json(ErrorBody) };
  const full = { description: 'No capacity, or the key\'s limit (`code: -503`).', content: json(DifyError) };
  registry.registerPath({
    method: 'post',
    path: '/v1/sandbox/run',
    operationId: 'difySandboxRun',
    tags: ['drop-in'],
    summary: "dify-sandbox's run endpoint (Dify's Code and Template nodes)",
    description:
      'Key in `X-Api-Key`. `python3` code runs in a throwaway session; `nodejs` code runs with Debian\'s node in the same kind of container. ' +
      'HTTP 200 with `code: 0` whether or not the code failed: `data.error` is non-empty only when it failed (traceback, timeout, OOM). ' +
      'HTTP 200 with `code: -400` for a body that does not bind, `code: -500` when the runner failed (`data: null`).',
    request: { body: { required: true, content: json(DifyRunBody) } },
    responses: { 200: { description: 'The envelope.', content: json(RunEnvelope) }, 400: unsupported, 401: badKey, 503: full },
  });
  for (const path of ['/v1/sandbox/dependencies', '/v1/sandbox/dependencies/refresh']) {
    registry.registerPath({
      method: 'get',
      path,
      operationId: path.endsWith('refresh') ? 'difySandboxRefreshDependencies' : 'difySandboxDependencies',
      tags: ['drop-in'],
      summary: 'Python packages of the session image (dify-sandbox shape)',
      request: { query: DifyLanguageQuery },
      responses: { 200: { description: 'The envelope.', content: json(DependenciesEnvelope) }, 400: unsupported, 401: badKey, 503: full },
    });
  }
  registry.registerPath({
    method: 'post',
    path: '/v1/sandbox/dependencies/update',
    operationId: 'difySandboxUpdateDependencies',
    tags: ['drop-in'],
    summary: 'Accepted and ignored: the session image is fixed',
    request: { body: { required: true, content: json(DifyLanguageQuery) } },
    responses: {
      200: { description: '`{"code":0,"message":"success","data":{}}`.', content: json(envelope(z.object({}), 'DifySandboxUpdateResponse')) },
      400: unsupported,
      401: badKey,
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/v1/images',
    operationId: 'listImages',
    tags: ['drop-in'],
    summary: 'The session image: interpreter versions and the Python packages a run can import',
    responses: {
      200: { description: 'The images sessions run in.', content: json(z.object({ images: z.array(ImageDescription) })) },
      401: { description: 'The key is not valid.', content: json(ErrorBody) },
      503: { description: 'No capacity for the probe run, or Docker/Redis down.', content: json(ErrorBody) },
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/health',
    operationId: 'difySandboxHealth',
    tags: ['drop-in'],
    summary: "dify-sandbox's health check: the JSON string \"ok\" (no key needed)",
    responses: { 200: { description: '"ok"', content: json(z.literal('ok')) } },
  });
}
