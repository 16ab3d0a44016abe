import { Router } from 'express';
import { ExecuteBody, NotFoundError } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { baseUrl, caller, parse, requireJson } from '../http';
import { toApiExecution } from '../presenters';
import { streamExecution, wantsEventStream } from '../sse';
import { sessionIdParam } from './sessions';

export const WaitQuery = z.object({ wait: z.enum(['true', 'false', '1', '0']).optional() }).passthrough();

function executionIdParam(raw: string): string {
  if (!z.uuid().safeParse(raw).success) throw new NotFoundError('execution', raw);
  return raw;
}

export function executionsRouter(ctx: ApiContext): Router {
  const r = Router();
  const { executions } = ctx;

  r.post('/v1/sessions/:id/executions', requireJson, async (req, res) => {
    const sessionId = sessionIdParam(String(req.params.id));
    const q = parse(WaitQuery, req.query, 'query');
    const body = parse(ExecuteBody, req.body ?? undefined);
    const rec = await executions.submit(sessionId, body, caller(req));
    if (wantsEventStream(req)) {
      await streamExecution(ctx, req, res, { sessionId, executionId: rec.id, maxWaitMs: rec.timeoutMs + 120_000 });
      return;
    }
    if (q.wait !== 'true' && q.wait !== '1') {
      res.status(202).json({ id: rec.id, sessionId, status: 'queued' });
      return;
    }
    const aborter = new AbortController();
    // Only a client that left early aborts (an abort after a normal answer would just cost a DOMException).
    res.on('close', () => !res.writableFinished && aborter.abort());
    const done = await executions.waitForEnd(rec.id, rec.timeoutMs + 120_000, aborter.signal);
    if (aborter.signal.aborted) return;
    res.status(200).json(toApiExecution(done ?? rec, baseUrl(req, ctx.config.publicUrl)));
  });

  r.get('/v1/sessions/:id/executions/:executionId', async (req, res) => {
    const rec = await executions.get(sessionIdParam(String(req.params.id)), executionIdParam(String(req.params.executionId)), caller(req));
    res.json(toApiExecution(rec, baseUrl(req, ctx.config.publicUrl)));
  });

  r.get('/v1/sessions/:id/figures/:figureId', async (req, res) => {
    const sessionId = sessionIdParam(String(req.params.id));
    await ctx.core.sessions.getLive(sessionId, caller(req), false, false);
    const png = await ctx.core.executionStore.getFigure(String(req.params.figureId), sessionId);
    if (!png) throw new NotFoundError('figure', String(req.params.figureId));
    res.type('image/png').setHeader('Cache-Control', 'private, max-age=3600');
    res.send(png);
  });

  return r;
}
