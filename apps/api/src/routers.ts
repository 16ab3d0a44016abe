import type { RouterFactory } from './app';

/** Routers beyond the core REST contract; each feature adds its factory here. */
export const extraRouters: RouterFactory[] = [];
