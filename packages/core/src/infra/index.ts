export { loadConfig } from './config';
export type { Config } from './config';
export { Keys } from './keys';
export { createLogger } from './logger';
export { createMetrics } from './metrics';
export type { Metrics } from './metrics';
export { runService } from './service-main';
export { createRedis, closeRedis, waitForRedis } from './redis';
export { withTimeout } from './timers';
