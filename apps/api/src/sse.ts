import type { Request, Response } from 'express';
import { Execution, Figure, SessionboxError, ValidationError, coalesce, errMsg, type ExecutionEvent } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from './context';
import { baseUrl } from './http';
import { figureUrl, toApiExecution } from './presenters';

/**
 * The Server-Sent Events of one execution. Each message is `id: <Redis stream entry id>`,
 * `event: <name>`, `data: <one line of JSON>`; `Last-Event-ID` resumes after that entry.
 */
export const StreamStarted = z
  .object({ executionId: z.uuid(), at: z.iso.datetime() })
  .meta({ id: 'StreamStarted', description: 'Data of the `started` event: the code began to run.' });
export const StreamOutput = z
  .object({ text: z.string() })
  .meta({ id: 'StreamOutput', description: 'Data of a `stdout` or `stderr` event: a chunk as the code printed it.' });

export const StreamMessage = z
  .discriminatedUnion('event', [
    z.object({ event: z.literal('started'), id: z.string(), data: StreamStarted }),
    z.object({ event: z.enum(['stdout', 'stderr']), id: z.string(), data: StreamOutput }),
    z.object({ event: z.literal('figure'), id: z.string(), data: Figure }),
    z.object({ event: z.literal('done'), id: z.string(), data: Execution }),
  ])
  .meta({
    id: 'StreamMessage',
    description:
      'One Server-Sent Event: `event` is the SSE event name, `id` the SSE id (give it back as `Last-Event-ID` to resume), ' +
      '`data` the JSON on the `data:` line. The stream ends after `done`, whose data is the whole Execution. ' +
      'A comment line (`: ping`) is sent every 15 s. If the stream cannot go on, an `error` event carries the Error body.',
  });

const EntryId = z.string().regex(/^\d{1,20}-\d{1,20}$/, 'must be a stream entry id such as 1712345678901-0');

export const HEARTBEAT_MS = 15_000;
const READ_BATCH = 64;

export interface StreamTarget {
  sessionId: string;
  executionId: string;
  /** Stream entry id after which to start; `-` (the default) replays from the first event. */
  afterId?: string;
  /** Give up (with an `error` event) if `done` has not come by then. */
  maxWaitMs: number;
}

/** `Last-Event-ID` (header, or `lastEventId` query for clients that cannot set headers), validated. */
export function lastEventId(req: Request): string {
  const raw = req.get('last-event-id') ?? (typeof req.query.lastEventId === 'string' ? req.query.lastEventId : undefined);
  if (raw === undefined || raw === '') return '-';
  const r = EntryId.safeParse(raw);
  if (!r.success) throw new ValidationError(`Last-Event-ID: ${r.error.issues[0].message}`, { field: 'Last-Event-ID' });
  return raw;
}

export function wantsEventStream(req: Request): boolean {
  return req.accepts(['application/json', 'text/event-stream']) === 'text/event-stream';
}

/** Resolves when `res` can take more, or is gone. */
function drained(res: Response): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

function frame(event: string, data: unknown, id?: string): string {
  return `${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Writes the execution's events as SSE until `done`: first everything already in its Redis stream
 * (so a late client misses nothing), then whatever each notification brings.
 */
export async function streamExecution(ctx: ApiContext, req: Request, res: Response, target: StreamTarget): Promise<void> {
  const store = ctx.core.executionStore;
  const base = baseUrl(req, ctx.config.publicUrl);
  const { sessionId, executionId } = target;
  let last = target.afterId ?? '-';
  let ended = false;
  let finish!: () => void;
  const closed = new Promise<void>((resolve) => (finish = resolve));

  const end = () => {
    if (ended) return;
    ended = true;
    finish();
    if (!res.writableEnded) res.end();
  };

  const toMessage = async (ev: ExecutionEvent): Promise<[string, unknown]> => {
    switch (ev.type) {
      case 'started':
        return ['started', { executionId, at: new Date(ev.at).toISOString() }];
      case 'stdout':
      case 'stderr':
        return [ev.type, { text: ev.data }];
      case 'figure':
        return ['figure', { id: ev.figure.id, mimeType: 'image/png', url: figureUrl(base, sessionId, ev.figure.id), width: ev.figure.width, height: ev.figure.height }];
      case 'done': {
        // The worker stores the final record and the `done` entry in one transaction, so it is final here.
        const rec = await store.get(executionId);
        if (!rec) throw new SessionboxError('execution_not_found', `execution ${executionId} expired`, 404);
        return ['done', toApiExecution(rec, base)];
      }
    }
  };

  const fail = (err: unknown) => {
    if (ended) return;
    const e =
      err instanceof SessionboxError ? err : new SessionboxError('stream_failed', `the event stream broke: ${errMsg(err)}`, 503);
    ctx.logger.warn({ executionId, err: e.message }, 'execution event stream ended early');
    res.write(frame('error', e.toJSON()));
    end();
  };

  const pump = coalesce(async () => {
    for (;;) {
      // In batches: a client that does not read holds the next batch back, not this process's memory.
      const rows = await store.readEvents(executionId, last, READ_BATCH);
      for (const row of rows) {
        if (ended) return true;
        const [event, data] = await toMessage(row.event);
        if (!res.write(frame(event, data, row.id))) await drained(res);
        last = row.id;
        if (event === 'done') {
          end();
          return true;
        }
      }
      if (rows.length < READ_BATCH || ended) return ended;
    }
  }, fail);

  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache, no-transform');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no');
  res.setHeader('Location', `${base}/v1/sessions/${sessionId}/executions/${executionId}/events`);
  res.socket?.setNoDelay(true);
  res.flushHeaders();

  res.on('close', end);
  // Each heartbeat also re-reads the log, so a missed pub/sub notification delays events but never loses them.
  const heartbeat = setInterval(() => {
    if (ended || res.writableNeedDrain) return;
    res.write(': ping\n\n');
    void pump();
  }, HEARTBEAT_MS);
  const deadline = setTimeout(
    () => fail(new SessionboxError('stream_timeout', `execution ${executionId} did not finish within ${target.maxWaitMs} ms`, 504)),
    target.maxWaitMs,
  );
  let off = () => {};
  try {
    await ctx.events.start();
    if (!ended) off = ctx.events.on(executionId, () => void pump());
    await pump();
  } catch (err) {
    fail(err);
  }
  await closed;
  off();
  clearInterval(heartbeat);
  clearTimeout(deadline);
}
