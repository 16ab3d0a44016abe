import type { Logger } from 'pino';
import { errMsg } from './err-msg';

export interface CloseStep {
  name: string;
  run(): unknown;
}

/**
 * A service's shutdown: named steps run in order, each on its own. A step that throws is logged
 * and the next one still runs, so one stuck or broken part never keeps the rest open. `close()`
 * runs the steps once; every later call gets the first call's promise (which never rejects).
 */
export class CloseSteps {
  private readonly steps: CloseStep[] = [];
  private closing: Promise<void> | null = null;
  /** The steps that threw, in order. */
  readonly failures: { step: string; error: string }[] = [];

  constructor(private readonly logger: Logger) {}

  add(name: string, run: () => unknown): this {
    this.steps.push({ name, run });
    return this;
  }

  get started(): boolean {
    return this.closing !== null;
  }

  close(): Promise<void> {
    return (this.closing ??= this.runAll());
  }

  private async runAll(): Promise<void> {
    for (const step of this.steps) {
      try {
        await step.run();
      } catch (err) {
        this.failures.push({ step: step.name, error: errMsg(err) });
        this.logger.error({ step: step.name, err: errMsg(err) }, 'shutdown step failed');
      }
    }
  }
}
