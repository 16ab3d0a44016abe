import type { NextFunction, Request, Response } from 'express';
import type { Logger } from 'pino';
import type { z } from 'zod';
import {
  PayloadTooLargeError,
  SessionboxError,
  UnavailableError,
  UnsupportedMediaTypeError,
  ValidationError,
  isSessionboxError,
  withTimeout,
  type Caller,
  type CoreParts,
} from '@sessionbox/core';

/** Parses with a zod schema; a failure is a 400 whose message names the field. */
export function parse<S extends z.ZodType>(schema: S, data: unknown, where = 'body'): z.infer<S> {
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue.path.length ? issue.path.join('.') : where;
  throw new ValidationError(`${field}: ${issue.message}`, {
    field,
    issues: r.error.issues.map((i) => ({ field: i.path.join('.') || where, message: i.message })),
  });
}

/** A JSON body is required to be declared as JSON; an empty body is allowed where the body is optional. */
export function requireJson(req: Request, _res: Response, next: NextFunction) {
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  if (hasBody && !req.is('application/json')) {
    return next(new UnsupportedMediaTypeError(`expected Content-Type: application/json, got ${req.headers['content-type'] ?? 'none'}`));
  }
  next();
}

export function baseUrl(req: Request, publicUrl?: string): string {
  if (publicUrl) return publicUrl.replace(/\/$/, '');
  return `${req.protocol}://${req.get('host')}`;
}

export function caller(req: Request): Caller {
  return (req as Request & { caller?: Caller }).caller ?? { owner: 'default' };
}

/**
 * Asked when an error is none of ours: is Redis or a Docker engine down? The answer comes from the
 * dependency itself (its client state, a ping), never from the wording of the error.
 */
export interface OutageProbes {
  redisDown(): Promise<boolean>;
  engineDown(): Promise<boolean>;
}

export function outageProbes(core: Pick<CoreParts, 'redis' | 'runtimes'>): OutageProbes {
  const answers = (p: Promise<unknown>, ms: number) => withTimeout(p, ms).then(() => true, () => false);
  return {
    redisDown: async () => core.redis.status !== 'ready' || !(await answers(core.redis.ping(), 1500)),
    engineDown: async () => (await Promise.all([...core.runtimes.values()].map((rt) => answers(rt.ping(), 3000)))).includes(false),
  };
}

/** Every error leaves as `{ error: { code, message } }` with the right status; never a stack. */
export function errorHandler(logger: Logger, probes: OutageProbes) {
  return async (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    let e: SessionboxError;
    const anyErr = err as { type?: string; status?: number; statusCode?: number; message?: string };
    if (isSessionboxError(err)) e = err;
    else if (anyErr?.type === 'entity.too.large') e = new PayloadTooLargeError('request body is too large');
    else if (anyErr?.type === 'entity.parse.failed') e = new ValidationError(`body: malformed JSON (${anyErr.message})`, { field: 'body' });
    else if (anyErr?.type === 'encoding.unsupported' || anyErr?.type === 'charset.unsupported')
      e = new UnsupportedMediaTypeError(anyErr.message ?? 'unsupported encoding');
    else if (typeof anyErr?.status === 'number' && anyErr.status >= 400 && anyErr.status < 500)
      e = new SessionboxError('bad_request', anyErr.message ?? 'bad request', anyErr.status);
    else if (await probes.redisDown()) e = new UnavailableError('redis_unavailable', 'Redis does not answer; try again shortly');
    else if (await probes.engineDown()) e = new UnavailableError('docker_unavailable', 'the Docker engine does not answer; try again shortly');
    else {
      logger.error({ err, path: req.path }, 'unhandled error');
      e = new SessionboxError('internal_error', 'internal error', 500);
    }
    if (e.status === 429 && 'retryAfterSeconds' in e) res.setHeader('Retry-After', String((e as { retryAfterSeconds: number }).retryAfterSeconds));
    if (res.headersSent) return res.end();
    res.status(e.status).json(e.toJSON());
  };
}
