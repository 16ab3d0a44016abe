import type { NextFunction, Request, Response } from 'express';
import { UnavailableError } from '@sessionbox/core';

/**
 * The requests under way, so that a closing API can let them finish: `?wait=true` runs and event
 * streams answer with their result instead of being cut. Once `begin()` is called every new
 * request gets 503 `shutting_down` and every answer says `Connection: close`.
 */
export class RequestDrain {
  private readonly open = new Set<Response>();
  private closing = false;
  private onIdle: (() => void) | null = null;

  get inFlight(): number {
    return this.open.size;
  }

  readonly middleware = (req: Request, res: Response, next: NextFunction): void => {
    if (this.closing) {
      res.setHeader('Connection', 'close');
      next(new UnavailableError('shutting_down', 'this API instance is shutting down; retry shortly'));
      return;
    }
    this.open.add(res);
    res.once('close', () => {
      this.open.delete(res);
      if (this.open.size === 0) this.onIdle?.();
    });
    next();
  };

  /** Stops admitting requests; resolves once none is under way. */
  begin(): Promise<void> {
    this.closing = true;
    for (const res of this.open) if (!res.headersSent) res.setHeader('Connection', 'close');
    if (this.open.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.onIdle = resolve));
  }
}
