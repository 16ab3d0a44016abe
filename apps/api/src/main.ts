import { runService } from '@sessionbox/core';
import { startApi } from './server';

runService('sessionbox-api', (config, logger) => startApi(config, { logger }));
