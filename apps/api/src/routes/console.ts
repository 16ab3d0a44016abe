import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Router, type Request, type Response } from 'express';
import { SessionboxError } from '@sessionbox/core';
import { CONSOLE_DIST } from '../../../console/build';
import type { ApiContext } from '../context';

/**
 * Only the console's own script and style run; what user code prints is text, and HTML it makes
 * goes into an iframe with an empty sandbox, which inherits this policy too.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "connect-src 'self'",
  "frame-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const ASSETS: Record<string, string> = { 'app.js': 'application/javascript; charset=utf-8', 'app.css': 'text/css; charset=utf-8' };

export class ConsoleNotBuiltError extends SessionboxError {
  constructor() {
    super('console_not_built', 'the console is not built: run `node --import tsx apps/console/build.ts` (npm start does)', 503);
  }
}

function send(req: Request, res: Response, file: string, type: string) {
  const path = join(CONSOLE_DIST, file);
  if (!existsSync(path)) throw new ConsoleNotBuiltError();
  res.setHeader('Content-Security-Policy', CONSOLE_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cache-Control', 'no-cache');
  res.setHeader('Vary', 'Accept-Encoding');
  res.type(type);
  if (req.acceptsEncodings('gzip') === 'gzip' && existsSync(`${path}.gz`)) {
    res.setHeader('Content-Encoding', 'gzip');
    return res.sendFile(`${file}.gz`, { root: CONSOLE_DIST, headers: { 'Content-Type': type } });
  }
  res.sendFile(file, { root: CONSOLE_DIST });
}

/** `GET /console` and its assets, built by apps/console/build.ts; the page loads without a key, its API calls carry one. */
export function consoleRouter(_ctx: ApiContext): Router {
  const r = Router();
  r.get(['/console', '/console/'], (req, res) => send(req, res, 'index.html', 'text/html; charset=utf-8'));
  r.get('/console/assets/:file', (req, res, next) => {
    const type = ASSETS[String(req.params.file)];
    if (!type) return next();
    send(req, res, String(req.params.file), type);
  });
  return r;
}
