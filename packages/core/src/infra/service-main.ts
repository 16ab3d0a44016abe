import type { Logger } from 'pino';
import { loadConfig, type Config } from './config';
import { createLogger } from './logger';
import { errMsg } from './err-msg';

/**
 * The shared `main` of api and worker: load config once, start, and on SIGINT/SIGTERM close (the
 * service's own `close` stops taking work first, drains, and isolates each step) before exiting.
 * `close` keeps its promise, so a second signal waits for the same shutdown.
 */
export function runService(name: string, start: (config: Config, logger: Logger) => Promise<{ close(): Promise<void> }>): void {
  const boot = async () => {
    const config = loadConfig();
    const logger = createLogger(name, config.logLevel);
    const service = await start(config, logger);
    const shutdown = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      void service
        .close()
        .catch((err) => logger.error({ err: errMsg(err) }, 'shutdown failed'))
        .then(() => process.exit(0));
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
  };
  boot().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
