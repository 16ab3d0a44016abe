import { Router } from 'express';
import { NotFoundError } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { caller } from '../http';
import { lastEventId, streamExecution } from '../sse';
import { sessionIdParam } from './sessions';

/** `GET …/executions/:executionId/events`: the run as Server-Sent Events, replayed from the start or from `Last-Event-ID`. */
export function eventsRouter(ctx: ApiContext): Router {
  const r = Router();

  r.get('/v1/sessions/:id/executions/:executionId/events', async (req, res) => {
    const sessionId = sessionIdParam(String(req.params.id));
    const executionId = String(req.params.executionId);
    if (!z.uuid().safeParse(executionId).success) throw new NotFoundError('execution', executionId);
    const afterId = lastEventId(req);
    const rec = await ctx.executions.get(sessionId, executionId, caller(req));
    await streamExecution(ctx, req, res, { sessionId, executionId, afterId, maxWaitMs: rec.timeoutMs + 120_000 });
  });

  return r;
}
