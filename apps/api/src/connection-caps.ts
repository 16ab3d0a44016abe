import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { RateLimitedError, type Caller, type KeyLimits } from '@sessionbox/core';

/**
 * Requests (and kernel WebSockets) a key holds open at once on this API process, under its
 * `maxConnections` budget: a client that opens streams and downloads and never reads them holds
 * memory and sockets here, so past the budget a key gets 429 until one of its own closes.
 */
export class ConnectionCaps {
  private readonly open = new Map<string, number>();

  constructor(private readonly limits: Pick<KeyLimits, 'budget'> | null) {}

  /** Counts one connection of `caller`, or throws 429; the returned function gives it back (once). */
  acquire(caller: Caller): () => void {
    const max = this.limits?.budget(caller.owner, 'maxConnections') ?? -1;
    if (max < 0) return () => undefined;
    const n = this.open.get(caller.owner) ?? 0;
    if (n >= max) {
      throw new RateLimitedError(`API key "${caller.owner}" has ${max} request(s) open on this server, its limit; close or finish one first`, 1, {
        limit: 'connections',
        max,
      });
    }
    this.open.set(caller.owner, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(caller.owner) ?? 1) - 1;
      if (left > 0) this.open.set(caller.owner, left);
      else this.open.delete(caller.owner);
    };
  }

  /** Holds a connection for each authenticated request until its response is closed. */
  middleware(): RequestHandler {
    return (req: Request, res: Response, next: NextFunction) => {
      const caller = (req as Request & { caller?: Caller }).caller;
      if (!caller) return next();
      let release: () => void;
      try {
        release = this.acquire(caller);
      } catch (err) {
        return next(err);
      }
      res.once('close', release);
      next();
    };
  }
}
