import type { Logger } from 'pino';
import { loadConfig, type Config } from './config';
import { createLogger } from './logger';

/**
 * The shared `main` of api and worker: load config once, start, and on SIGINT/SIGTERM close in
 * order (the service's own `close` stops taking work first) before exiting.
 */
export function runService(name: string, start: (config: Config, logger: Logger) => Promise<{ close(): Promise<void> }>): void {
  const boot = async () => {
    const config = loadConfig();
    const logger = createLogger(name, config.logLevel);
    const service = await start(config, logger);
    let closing = false;
    const shutdown = async (signal: string) => {
      if (closing) return;
      closing = true;
      logger.info({ signal }, 'shutting down');
      await service.close().catch((err) => logger.error({ err: (err as Error).message }, 'shutdown step failed'));
      process.exit(0);
    };
    process.on('SIGINT', () => void shutdown('SIGINT'));
    process.on('SIGTERM', () => void shutdown('SIGTERM'));
  };
  boot().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
