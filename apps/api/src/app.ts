import express, { type Express } from 'express';
import { NotFoundError } from '@sessionbox/core';
import type { ApiContext } from './context';
import { errorHandler } from './http';
import { executionsRouter } from './routes/executions';
import { healthRouter } from './routes/health';
import { sessionsRouter } from './routes/sessions';

/** Extra routers (tools, MCP, files, drop-ins…) mount here, each as `(ctx) => Router`. */
export type RouterFactory = (ctx: ApiContext) => express.Router;

export function createApp(ctx: ApiContext, extra: RouterFactory[] = []): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback');
  // JSON-escaped code can be several times its raw size; the 1 MiB cap on code itself is checked after parsing.
  app.use(express.json({ limit: ctx.config.maxCodeBytes * 6 + 64 * 1024, strict: false }));
  app.use(healthRouter(ctx));
  app.use(sessionsRouter(ctx));
  app.use(executionsRouter(ctx));
  for (const make of extra) app.use(make(ctx));
  app.use((req, _res, next) => next(new NotFoundError('route', `${req.method} ${req.path}`)));
  app.use(errorHandler(ctx.logger));
  return app;
}
