import type { Router } from 'express';
import type { Logger } from 'pino';
import type { ConnectionCaps } from './connection-caps';
import type { Config, CoreParts, ExecutionEvents, ExecutionQueues, ExecutionService, Metrics, SessionFiles } from '@sessionbox/core';

/** Everything a route needs, built once by the server and handed to each router. */
export interface ApiContext {
  config: Config;
  core: CoreParts;
  executions: ExecutionService;
  events: ExecutionEvents;
  queues: ExecutionQueues;
  logger: Logger;
  metrics: Metrics;
  /** Files in and out of sessions, archives and restores (routes/files.ts, restoreFrom, MCP). */
  files: SessionFiles;
  /** Requests and kernel WebSockets each key holds open on this process (its `maxConnections`). */
  connections: ConnectionCaps;
}

/** One router per feature area, built from the shared context (see routers.ts). */
export type RouterFactory = (ctx: ApiContext) => Router;
