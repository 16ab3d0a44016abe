import { createLogger, loadConfig } from '@sessionbox/core';
import { startApi } from './server';

async function main() {
  const config = loadConfig();
  const logger = createLogger('sessionbox-api', config.logLevel);
  const api = await startApi(config, { logger });
  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    await api.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
