import { Queue, type ConnectionOptions } from 'bullmq';
import IORedis from 'ioredis';
import { Keys } from '../infra/keys';
import { closeRedis } from '../infra/redis';
import { withTimeout } from '../infra/timers';

export interface ExecutionJobData {
  executionId: string;
  sessionId: string;
}

/** One BullMQ queue per Docker host, so a session's code always runs where its container is. */
export class ExecutionQueues {
  private readonly queues = new Map<string, Queue<ExecutionJobData>>();
  private readonly keys: Keys;

  constructor(
    private readonly connection: ConnectionOptions,
    namespace: string,
  ) {
    this.keys = new Keys(namespace);
  }

  forHost(host: string): Queue<ExecutionJobData> {
    let q = this.queues.get(host);
    if (!q) {
      q = new Queue<ExecutionJobData>(this.keys.queueName(host), {
        connection: this.connection,
        prefix: this.keys.queuePrefix(),
        defaultJobOptions: { attempts: 1, removeOnComplete: true, removeOnFail: { age: 24 * 3600, count: 10000 } },
      });
      // Without a listener BullMQ prints every connection error of an outage; add() reports them to its caller.
      q.on('error', () => undefined);
      this.queues.set(host, q);
    }
    return q;
  }

  async add(host: string, data: ExecutionJobData): Promise<void> {
    await this.forHost(host).add('execute', data, { jobId: data.executionId });
  }

  /** Closes the queues and the connection they share (BullMQ leaves a passed-in connection open). */
  async close() {
    await Promise.all([...this.queues.values()].map((q) => withTimeout(q.close(), 3000, 'queue close').catch(() => undefined)));
    this.queues.clear();
    if (this.connection instanceof IORedis) await closeRedis(this.connection);
  }
}
