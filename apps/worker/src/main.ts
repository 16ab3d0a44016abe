import { createLogger, loadConfig } from '@sessionbox/core';
import { startWorker } from './worker';

async function main() {
  const config = loadConfig();
  const logger = createLogger('sessionbox-worker', config.logLevel);
  const worker = await startWorker(config, { logger });
  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down: no new work, finishing running executions');
    await worker.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
