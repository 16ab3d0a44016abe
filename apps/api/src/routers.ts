import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import type { RouterFactory } from './context';
import { adminRouter } from './routes/admin';
import { consoleRouter } from './routes/console';
import { eventsRouter } from './routes/events';
import { filesRouter, registerFilesPaths } from './routes/files';
import { dropinRouter, registerDropinPaths } from './routes/dropin';
import { difySandboxRouter, registerDifySandboxPaths } from './routes/dify-sandbox';
import { mcpRouter, registerMcpPaths } from './routes/mcp';
import { jupyterRouter } from './routes/jupyter';
import { metricsRouter } from './routes/metrics';
import { registerToolsPaths, toolsRouter } from './routes/tools';

/**
 * Features beyond the core REST contract. Each adds one entry: its router factory and the function
 * that registers its paths in the OpenAPI document (generated from the same zod schemas).
 */
export interface Feature {
  name: string;
  router: RouterFactory;
  openapi?: (registry: OpenAPIRegistry) => void;
}

export const features: Feature[] = [
  // one line per feature, e.g. { name: 'tools', router: toolsRouter, openapi: registerToolsPaths },
  { name: 'files', router: filesRouter, openapi: registerFilesPaths },
  { name: 'streaming', router: eventsRouter }, // its path is part of the core document (openapi.ts)
  { name: 'tools', router: toolsRouter, openapi: registerToolsPaths },
  { name: 'mcp', router: mcpRouter, openapi: registerMcpPaths },
  { name: 'dropin', router: dropinRouter, openapi: registerDropinPaths },
  { name: 'dify-sandbox', router: difySandboxRouter, openapi: registerDifySandboxPaths },
  { name: 'metrics', router: metricsRouter }, // Prometheus text, not part of the JSON API document
  { name: 'jupyter', router: jupyterRouter }, // jupyter_server's kernels API; its WebSocket is jupyter/kernel-sockets.ts
  { name: 'admin', router: adminRouter }, // the admin CLI's operations over HTTP, for the admin key
  { name: 'console', router: consoleRouter }, // the web console (static page and assets)
];

export const extraRouters: RouterFactory[] = features.map((f) => f.router);
