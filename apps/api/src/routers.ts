import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import type { RouterFactory } from './app';

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
];

export const extraRouters: RouterFactory[] = features.map((f) => f.router);
