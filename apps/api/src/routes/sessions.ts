import { Router } from 'express';
import { CreateSessionBody, SessionStatus, toApiSession, NotFoundError } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { caller, parse, requireJson } from '../http';

/** A listing cursor on the wire: base64url of `<createdAt>.<id>` of the last session given. */
const Cursor = z
  .string()
  .transform((raw, ctx) => {
    const m = /^(\d{1,15})\.([0-9a-f-]{36})$/.exec(Buffer.from(raw, 'base64url').toString('latin1'));
    if (!m) {
      ctx.addIssue({ code: 'custom', message: 'not a cursor this API gave out (use nextCursor as it is)' });
      return z.NEVER;
    }
    return { createdAt: Number(m[1]), id: m[2] };
  });

export const encodeCursor = (c: { createdAt: number; id: string }) => Buffer.from(`${c.createdAt}.${c.id}`, 'latin1').toString('base64url');

export const ListQuery = z
  .object({
    status: SessionStatus.optional(),
    limit: z.coerce.number().int().min(1).max(500).optional(),
    cursor: Cursor.optional(),
  })
  .passthrough();
export const DeleteSessionQuery = z
  .object({
    keep: z
      .enum(['files', 'outputs', 'files,outputs', 'outputs,files'])
      .optional()
      .meta({
        description:
          '`files`: archive the working directory first, so `restoreFrom` can bring it back into a new session. ' +
          '`outputs`: keep the executions (stdout, results) readable until they lapse; without it they are deleted with the session.',
      }),
  })
  .passthrough();

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
    if (body.restoreFrom) {
      const restored = await ctx.files.restore(body, caller(req));
      const note = `${restored.files} file(s) restored from session ${body.restoreFrom}; variables, imports and other in-memory state were not restored`;
      res.status(201).json({ ...toApiSession(restored.session), notes: [note] });
      return;
    }
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
    const who = caller(req);
    const list = await sessions.list(who, { status: q.status, metadata }, { cursor: q.cursor, limit: q.limit });
    res.json({
      sessions: list.sessions.map((rec) => (who.owner === '*' ? { ...toApiSession(rec), owner: rec.owner } : toApiSession(rec))),
      nextCursor: list.nextCursor ? encodeCursor(list.nextCursor) : null,
    });
  });

  r.get('/v1/sessions/:id', async (req, res) => {
    const rec = await sessions.getLive(sessionIdParam(String(req.params.id)), caller(req));
    res.json(toApiSession(rec));
  });

  r.delete('/v1/sessions/:id', async (req, res) => {
    const id = sessionIdParam(String(req.params.id));
    const keep = (parse(DeleteSessionQuery, req.query, 'query').keep ?? '').split(',');
    const keepFiles = keep.includes('files');
    await sessions.delete(id, caller(req), 'deleted', { keepFiles, dropOutputs: !keep.includes('outputs') });
    if (!keepFiles) return void res.status(204).end();
    // With keep=files the answer says whether the archive was made (it can fail, e.g. over its cap).
    const archived = await ctx.files.archiveInfo(id);
    res.status(200).json(
      archived
        ? { id, restorable: true, restoreUntil: new Date(archived.expiresAt).toISOString(), files: archived.files, archiveBytes: archived.size }
        : { id, restorable: false },
    );
  });

  return r;
}
