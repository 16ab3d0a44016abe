import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { Router, type NextFunction, type Request, type Response } from 'express';
import { ErrorBody, decodePythonEscapes, type ExecutionRecord } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { baseUrl, caller, parse, requireJson } from '../http';
import { runThrowaway } from '../tool-runs';

/**
 * Drop-in replacements for executors people already call, each run in a session of its own that
 * is removed before the answer leaves:
 * - `POST /execute`: the FastAPI executor Dify workflows call (escaped code in, PNG or JSON out);
 * - `POST /v1/run/`: AgentRun's REST API (`{"output": …}`).
 */

export const DropinBody = z
  .object({ code: z.string().meta({ description: 'Python source.' }) })
  .meta({ id: 'DropinExecuteRequest' });

export const NO_FIGURE_TEXT = 'コードは実行されましたが、画像は生成されませんでした。';

const ExecuteJson = z
  .object({
    status_code: z.union([z.literal(200), z.literal(500)]),
    body: z.string(),
    traceback: z.string().optional(),
    files: z.array(z.unknown()),
  })
  .meta({ id: 'DropinExecuteResult', description: 'When no figure was made (status_code 200) or the code raised (status_code 500); the HTTP status is 200 either way.' });

const RunOutput = z.object({ output: z.string() }).meta({ id: 'AgentRunOutput' });

const DROPIN_PATHS = ['/execute', '/v1/run'];

/** Any origin may call, as the FastAPI original allowed (no cookies are involved). */
function cors(req: Request, res: Response, next: NextFunction) {
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Expose-Headers', 'Content-Disposition');
  if (req.method !== 'OPTIONS') return next();
  res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
  res.setHeader('Access-Control-Allow-Headers', req.get('access-control-request-headers') ?? '*');
  res.setHeader('Access-Control-Max-Age', '600');
  res.status(204).end();
}

function errorMessage(rec: ExecutionRecord): string {
  if (rec.error) return rec.error.value || rec.error.name;
  if (rec.status === 'timed_out') return `execution timed out after ${Math.round(rec.timeoutMs / 1000)} s`;
  return `execution ${rec.status}${rec.cause ? ` (${rec.cause})` : ''}`;
}

export function dropinRouter(ctx: ApiContext): Router {
  const r = Router();
  r.use(DROPIN_PATHS, cors);

  const start = (req: Request, res: Response) => {
    const aborter = new AbortController();
    res.on('close', () => aborter.abort());
    return { caller: caller(req), base: baseUrl(req, ctx.config.publicUrl), signal: aborter.signal };
  };

  r.post('/execute', requireJson, async (req, res) => {
    const { code } = parse(DropinBody, req.body ?? undefined);
    const scope = start(req, res);
    const answer = await runThrowaway(ctx, { code: decodePythonEscapes(code), ...scope, metadata: { via: 'execute' } }, async ({ record }) => {
      if (record.status !== 'succeeded') {
        const traceback = record.error?.traceback || `${record.error?.name ?? 'Error'}: ${errorMessage(record)}`;
        return { json: { status_code: 500, body: `エラーが発生しました: ${errorMessage(record)}`, traceback, files: [] } };
      }
      // The original saved the current (last drawn) figure; every figure of the run is here, take the last.
      const last = record.figures.at(-1);
      const png = last ? await ctx.core.executionStore.getFigure(last.id) : null;
      if (png) return { png };
      return { json: { status_code: 200, body: record.stdout ? `${NO_FIGURE_TEXT}\n${record.stdout}` : NO_FIGURE_TEXT, files: [] } };
    });
    if (scope.signal.aborted) return;
    if ('png' in answer) {
      res.setHeader('Content-Disposition', 'attachment; filename="graph.png"');
      return void res.type('image/png').send(answer.png);
    }
    res.json(answer.json);
  });

  r.post(['/v1/run', '/v1/run/'], requireJson, async (req, res) => {
    const { code } = parse(DropinBody, req.body ?? undefined);
    const scope = start(req, res);
    const output = await runThrowaway(ctx, { code, ...scope, metadata: { via: 'run' } }, async ({ record }) => {
      let out = record.stdout + record.stderr;
      if (record.error) out += record.error.traceback || `${record.error.name}: ${record.error.value}`;
      else if (record.status !== 'succeeded') out += `Error: ${errorMessage(record)}\n`;
      return out;
    });
    if (scope.signal.aborted) return;
    res.json({ output });
  });

  return r;
}

export function registerDropinPaths(registry: OpenAPIRegistry) {
  const errors = {
    400: { description: 'The body has no string `code`.', content: { 'application/json': { schema: ErrorBody } } },
    413: { description: 'The code is too large.', content: { 'application/json': { schema: ErrorBody } } },
    415: { description: 'The body is not JSON.', content: { 'application/json': { schema: ErrorBody } } },
    503: { description: 'Docker, Redis or capacity problem; retry shortly.', content: { 'application/json': { schema: ErrorBody } } },
  };
  registry.registerPath({
    method: 'post',
    path: '/execute',
    operationId: 'executeForDify',
    tags: ['drop-in'],
    summary: 'Drop-in for the FastAPI executor Dify workflows call',
    description:
      'Escape sequences in `code` (`\\n`, `\\t`, `\\"`, `\\uXXXX`, …) are decoded as Python\'s unicode_escape does, but non-ASCII text (Japanese) stays intact. ' +
      'Runs in a throwaway session. Answers the last figure as `graph.png`, or JSON when there is no figure or the code raised.',
    request: { body: { required: true, content: { 'application/json': { schema: DropinBody } } } },
    responses: {
      200: {
        description: 'The figure (PNG, `Content-Disposition: attachment; filename="graph.png"`), or JSON.',
        content: { 'image/png': { schema: { type: 'string', format: 'binary' } }, 'application/json': { schema: ExecuteJson } },
      },
      ...errors,
    },
  });
  registry.registerPath({
    method: 'post',
    path: '/v1/run/',
    operationId: 'runForAgentRun',
    tags: ['drop-in'],
    summary: "Drop-in for AgentRun's REST API (also without the trailing slash)",
    description: 'Runs `code` in a throwaway session; `output` is stdout and stderr, then the traceback when it raised.',
    request: { body: { required: true, content: { 'application/json': { schema: DropinBody } } } },
    responses: { 200: { description: 'The output.', content: { 'application/json': { schema: RunOutput } } }, ...errors },
  });
}
