export { ExecutionEvents } from './execution-events';
export { ExecutionProcessor } from './execution-processor';
export { ExecutionQueues } from './execution-queue';
export type { ExecutionJobData } from './execution-queue';
export { ExecutionService } from './execution-service';
export type { ExecutionRecord, ExecutionEvent } from './execution-store';
