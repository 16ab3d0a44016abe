import express, { type Express, type RequestHandler } from 'express';
import { NotFoundError } from '@sessionbox/core';
import { authenticate, isAuthenticated } from './auth';
import type { ApiContext, RouterFactory } from './context';
import { errorHandler, outageProbes } from './http';
import { docsRouter } from './routes/docs';
import { executionsRouter } from './routes/executions';
import { isFileUpload } from './routes/files';
import { healthRouter } from './routes/health';
import { sessionsRouter } from './routes/sessions';

/** Extra routers (tools, MCP, files, drop-ins…) mount here, each as `(ctx) => Router`. */

/** `intake` sees every request first (the server's `RequestDrain`, which refuses new ones while closing). */
export function createApp(ctx: ApiContext, extra: RouterFactory[] = [], intake?: RequestHandler): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');
  if (intake) app.use(intake);
  app.use(authenticate(ctx.config));
  app.use(ctx.connections.middleware());
  // JSON-escaped code can be several times its raw size; the 1 MiB cap on code itself is checked after parsing.
  const json = express.json({ limit: ctx.config.maxCodeBytes * 6 + 64 * 1024, strict: false });
  // A raw file upload (PUT …/files/<path>) is stored byte for byte, even when it is declared as JSON.
  // Bodies are read only for a caller with a valid key (or any caller of an open API).
  app.use((req, res, next) => (!isAuthenticated(req) || isFileUpload(req) ? next() : json(req, res, next)));
  app.use(healthRouter(ctx));
  app.use(docsRouter(ctx));
  app.use(sessionsRouter(ctx));
  app.use(executionsRouter(ctx));
  for (const make of extra) app.use(make(ctx));
  app.use((req, _res, next) => next(new NotFoundError('route', `${req.method} ${req.path}`)));
  app.use(errorHandler(ctx.logger, outageProbes(ctx.core)));
  return app;
}
