import { runService } from '@sessionbox/core';
import { startWorker } from './worker';

runService('sessionbox-worker', (config, logger) => startWorker(config, { logger }));
