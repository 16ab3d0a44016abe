import express, { Router } from 'express';
import { ValidationError } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { caller, parse } from '../http';
import { KERNEL_NAME, jupyterKernels } from '../jupyter/jupyter-kernels';
import { sessionIdParam } from './sessions';

/** The jupyter_server release whose REST shapes these are (`GET /api`). */
export const JUPYTER_SERVER_VERSION = '2.14.2';

/** `POST /api/kernels`: jupyter_server's body (`name`, `path`); `ttlSeconds` is sessionbox's own. */
export const StartKernelBody = z
  .object({
    name: z.literal(KERNEL_NAME, { message: `the only kernel spec is ${KERNEL_NAME}` }).optional(),
    path: z.string().optional(),
    env: z.record(z.string(), z.string()).optional(),
    ttlSeconds: z.number().int().min(10).max(86400).optional(),
  })
  .passthrough();

/** The body as JSON whatever its declared type: already parsed (application/json), text, or nothing. */
function jsonBody(body: unknown): unknown {
  if (typeof body !== 'string') return body ?? {};
  if (!body.trim()) return {};
  try {
    return JSON.parse(body);
  } catch (err) {
    throw new ValidationError(`body: malformed JSON (${(err as Error).message})`, { field: 'body' });
  }
}

function kernelSpec() {
  return {
    name: KERNEL_NAME,
    spec: {
      argv: ['python3', '-m', 'sessionbox_kernel', '-f', '{connection_file}'],
      display_name: 'Python 3 (sessionbox)',
      language: 'python',
      interrupt_mode: 'signal',
      env: {},
      metadata: { debugger: false },
    },
    resources: {},
  };
}

/** jupyter_server's kernels and kernelspecs REST API; each kernel is a session (see jupyter/kernel-sockets.ts for the WebSocket). */
export function jupyterRouter(ctx: ApiContext): Router {
  const r = Router();
  const kernels = jupyterKernels(ctx);

  r.get('/api', (_req, res) => void res.json({ version: JUPYTER_SERVER_VERSION }));

  r.get('/api/kernelspecs', (_req, res) => void res.json({ default: KERNEL_NAME, kernelspecs: { [KERNEL_NAME]: kernelSpec() } }));
  r.get('/api/kernelspecs/:name', (req, res) => {
    if (req.params.name !== KERNEL_NAME) {
      return void res.status(404).json({ error: { code: 'kernelspec_not_found', message: `kernel spec ${req.params.name} not found; the only one is ${KERNEL_NAME}` } });
    }
    res.json(kernelSpec());
  });

  r.get('/api/kernels', async (req, res) => {
    res.json(await kernels.list(caller(req)));
  });

  // Jupyter clients send the JSON body with whatever Content-Type their fetch picks (text/plain here).
  r.post('/api/kernels', express.text({ type: () => true, limit: '64kb' }), async (req, res) => {
    const body = parse(StartKernelBody, jsonBody(req.body));
    const model = await kernels.start(caller(req), { ttlSeconds: body.ttlSeconds });
    res.setHeader('Location', `/api/kernels/${model.id}`);
    res.status(201).json(model);
  });

  r.get('/api/kernels/:id', async (req, res) => {
    res.json(await kernels.get(sessionIdParam(String(req.params.id)), caller(req)));
  });

  r.delete('/api/kernels/:id', async (req, res) => {
    await kernels.shutdown(sessionIdParam(String(req.params.id)), caller(req));
    res.status(204).end();
  });

  r.post('/api/kernels/:id/interrupt', async (req, res) => {
    await kernels.interrupt(sessionIdParam(String(req.params.id)), caller(req));
    res.status(204).end();
  });

  r.post('/api/kernels/:id/restart', async (req, res) => {
    res.json(await kernels.restart(sessionIdParam(String(req.params.id)), caller(req)));
  });

  return r;
}
