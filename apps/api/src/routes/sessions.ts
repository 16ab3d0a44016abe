import { Router } from 'express';
import { CreateSessionBody, SessionStatus, toApiSession, NotFoundError } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { caller, parse, requireJson } from '../http';

const ListQuery = z.object({ status: SessionStatus.optional() }).passthrough();

/** Validates an id from the path; a malformed id is simply an unknown session (404). */
export function sessionIdParam(raw: string): string {
  if (!z.uuid().safeParse(raw).success) throw new NotFoundError('session', raw);
  return raw;
}

export function sessionsRouter(ctx: ApiContext): Router {
  const r = Router();
  const { sessions } = ctx.core;

  r.post('/v1/sessions', requireJson, async (req, res) => {
    const body = parse(CreateSessionBody, req.body ?? {});
    const rec = await sessions.create(body, caller(req));
    res.status(201).json(toApiSession(rec));
  });

  r.get('/v1/sessions', async (req, res) => {
    const q = parse(ListQuery, req.query, 'query');
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.query)) {
      const m = /^metadata\.(.+)$/.exec(k);
      if (m && typeof v === 'string') metadata[m[1]] = v;
    }
    const list = await sessions.list(caller(req), { status: q.status, metadata });
    res.json({ sessions: list.map(toApiSession) });
  });

  r.get('/v1/sessions/:id', async (req, res) => {
    const rec = await sessions.getLive(sessionIdParam(String(req.params.id)), caller(req));
    res.json(toApiSession(rec));
  });

  r.delete('/v1/sessions/:id', async (req, res) => {
    await sessions.delete(sessionIdParam(String(req.params.id)), caller(req));
    res.status(204).end();
  });

  return r;
}
