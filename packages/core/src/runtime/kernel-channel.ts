import { EventEmitter } from 'node:events';
import { ChannelClosedError } from '../errors/errors';
import type { AttachedStream, ContainerRuntime } from './container-runtime';
import { LineSplitter } from './line-splitter';

/** One event from the supervisor in the session container (see images/python-runner/PROTOCOL.md). */
export interface KernelEvent {
  ev: string;
  id?: string | null;
  [k: string]: unknown;
}

/**
 * Longest line accepted from a container. The supervisor keeps its own events well below it (a
 * figure is at most 4 MiB of PNG, sent as base64; a `done` carries at most 8 MiB of escaped file
 * paths and a result of at most maxOutputBytes); anything longer is forged or broken and is dropped
 * whole, without ending the channel.
 */
export const MAX_LINE_BYTES = 32 * 1024 * 1024;

/**
 * The supervisor's stdin/stdout, attached once per container and kept open: a request costs
 * one write and the answer arrives on the same stream, with no process start and no `docker exec`.
 */
export class KernelChannel extends EventEmitter {
  private readonly lines = new LineSplitter(MAX_LINE_BYTES, (line) => this.onLine(line));
  private closedErr: Error | null = null;
  private readonly handlers = new Map<string, (e: KernelEvent) => void>();

  constructor(private readonly stream: AttachedStream) {
    super();
    stream.stdout.on('data', (chunk: Buffer) => {
      if (!this.closedErr) this.lines.push(chunk);
    });
    stream.stdout.on('end', () => this.fail(new ChannelClosedError()));
    stream.stdout.on('close', () => this.fail(new ChannelClosedError()));
    stream.stdout.on('error', (err: Error) => this.fail(new ChannelClosedError(err.message)));
    stream.stdin.on('error', (err: Error) => this.fail(new ChannelClosedError(err.message)));
  }

  get closed(): boolean {
    return this.closedErr !== null;
  }

  /** Lines dropped for their size (a forged or broken container). */
  get oversizedLines(): number {
    return this.lines.oversized;
  }

  private onLine(raw: Buffer) {
    let ev: KernelEvent;
    try {
      ev = JSON.parse(raw.toString('utf8'));
    } catch {
      return;
    }
    if (!ev || typeof ev !== 'object' || typeof ev.ev !== 'string') return;
    if (typeof ev.id === 'string') this.handlers.get(ev.id)?.(ev);
    this.emit('event', ev);
  }

  private fail(err: Error) {
    if (this.closedErr) return;
    this.closedErr = err;
    this.stream.close();
    this.emit('closed', err);
  }

  close() {
    this.fail(new ChannelClosedError('channel closed by the worker'));
  }

  send(req: Record<string, unknown>) {
    if (this.closedErr) throw this.closedErr;
    this.stream.stdin.write(JSON.stringify(req) + '\n');
  }

  /**
   * Sends a request and feeds every event with its id to `onEvent` until `isLast` says stop.
   * Rejects when the stream closes first or `timeoutMs` passes.
   */
  request<T extends KernelEvent>(
    req: { id: string; op: string; [k: string]: unknown },
    opts: { onEvent?: (e: KernelEvent) => void; isLast: (e: KernelEvent) => boolean; timeoutMs: number },
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.handlers.delete(req.id);
        this.off('closed', onClosed);
        fn();
      };
      const onClosed = (err: Error) => done(() => reject(err));
      const timer = setTimeout(
        () => done(() => reject(new ChannelClosedError(`no answer from the session container in ${opts.timeoutMs} ms`))),
        opts.timeoutMs,
      );
      this.handlers.set(req.id, (e) => {
        if (opts.isLast(e)) done(() => resolve(e as T));
        else opts.onEvent?.(e);
      });
      this.once('closed', onClosed);
      if (this.closedErr) return onClosed(this.closedErr);
      try {
        this.send(req);
      } catch (err) {
        onClosed(err as Error);
      }
    });
  }
}

/** Keeps one open channel per container for this worker process. */
export class KernelChannelPool {
  private readonly channels = new Map<string, Promise<KernelChannel>>();

  constructor(private readonly runtime: ContainerRuntime) {}

  get(containerId: string): Promise<KernelChannel> {
    const existing = this.channels.get(containerId);
    if (existing) return existing;
    const p = this.runtime.attach(containerId).then((stream) => {
      const ch = new KernelChannel(stream);
      ch.once('closed', () => {
        if (this.channels.get(containerId) === p) this.channels.delete(containerId);
      });
      return ch;
    });
    p.catch(() => this.channels.delete(containerId));
    this.channels.set(containerId, p);
    return p;
  }

  async drop(containerId: string) {
    const p = this.channels.get(containerId);
    this.channels.delete(containerId);
    if (p) (await p.catch(() => null))?.close();
  }

  async closeAll() {
    const all = [...this.channels.keys()];
    await Promise.all(all.map((id) => this.drop(id)));
  }
}
