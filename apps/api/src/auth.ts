import type { IncomingMessage } from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ApiKeyring, UnauthorizedError, type Caller, type Config } from '@sessionbox/core';

/**
 * Paths anyone may call: liveness (load balancers; `/health` is dify-sandbox's), metrics (aggregate
 * counts only), the API description, and the console's page and assets (its API calls carry the
 * key). Everything else needs a key once keys are configured.
 */
const OPEN_PATHS = [/^\/healthz$/, /^\/health$/, /^\/metrics$/, /^\/openapi\.json$/, /^\/docs(\/.*)?$/, /^\/console(\/.*)?$/];

/**
 * The presented key: `Authorization: Bearer <key>`, or `X-API-Key: <key>` (Dify custom-tool auth, scripts).
 * Under /api/ (the Jupyter kernels API) also as Jupyter clients send it: `Authorization: token <key>`
 * or `?token=<key>` (WebSocket clients cannot set headers).
 */
export function presentedKey(req: IncomingMessage & { originalUrl?: string }): string | null {
  const url = req.originalUrl ?? req.url ?? '/';
  const jupyter = url.startsWith('/api/') || url === '/api' || url.startsWith('/api?');
  const auth = req.headers.authorization;
  if (typeof auth === 'string') {
    const m = (jupyter ? /^(?:Bearer|token)[ \t]+(\S+)[ \t]*$/i : /^Bearer[ \t]+(\S+)[ \t]*$/i).exec(auth);
    if (m) return m[1];
  }
  const x = req.headers['x-api-key'];
  if (typeof x === 'string' && x.trim()) return x.trim();
  if (jupyter) {
    const token = new URL(url, 'http://x').searchParams.get('token');
    if (token) return token;
  }
  return null;
}

/**
 * Turns the request's API key into `req.caller` (`{ owner: <key name> }`, `{ owner: '*' }` for the
 * admin key). Runs before body parsing, and app.ts parses a body only for an authenticated request: open
 * paths and CORS preflights let a caller without a key in, but never get their body read.
 * With no key configured every request is the single `default` caller (see server.ts: localhost only).
 */
const AUTHENTICATED = Symbol('sessionbox.authenticated');

/** True once `authenticate` let the request in as a caller (an open API lets every request in). */
export function isAuthenticated(req: Request): boolean {
  return (req as Request & { [AUTHENTICATED]?: true })[AUTHENTICATED] === true;
}

function markAuthenticated(req: Request) {
  (req as Request & { [AUTHENTICATED]?: true })[AUTHENTICATED] = true;
}

export function authenticate(config: Pick<Config, 'apiKeys' | 'adminKey'>): RequestHandler {
  const ring = new ApiKeyring(config.apiKeys ?? [], config.adminKey ?? null);
  return (req: Request, res: Response, next: NextFunction) => {
    if (ring.open) {
      markAuthenticated(req);
      return next();
    }
    // CORS preflights (the drop-in endpoints) never carry credentials.
    if (req.method === 'OPTIONS' || OPEN_PATHS.some((re) => re.test(req.path))) return next();
    const key = presentedKey(req);
    const caller = key ? ring.lookup(key) : null;
    if (!caller) {
      res.setHeader('WWW-Authenticate', key ? 'Bearer realm="sessionbox", error="invalid_token"' : 'Bearer realm="sessionbox"');
      return next(
        new UnauthorizedError(
          key ? 'the API key is not valid' : 'an API key is required: send "Authorization: Bearer <key>" (or "X-API-Key: <key>")',
        ),
      );
    }
    (req as Request & { caller?: Caller }).caller = caller;
    markAuthenticated(req);
    next();
  };
}
