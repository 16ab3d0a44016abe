import { SessionboxError, errMsg, runFileOp, type Caller, type CreateSessionBody } from '@sessionbox/core';
import type { ApiContext } from '../context';
import type { KernelMessage } from './kernel-message';

export const KERNEL_NAME = 'python3';

/** jupyter_server's kernel model. */
export interface KernelModel {
  id: string;
  name: string;
  last_activity: string;
  execution_state: 'idle' | 'busy' | 'dead';
  connections: number;
}

/** One open WebSocket of a kernel, as the hub sees it. */
export interface KernelPeer {
  send(msg: KernelMessage): void;
  /** Ends the connection (the kernel is gone or the server closes). */
  close(code: number, reason: string): void;
}

type SessionRecord = Awaited<ReturnType<ApiContext['core']['sessions']['find']>>;

/**
 * Sends SIGINT to the session's kernel process (the same signal the supervisor sends at a timeout):
 * the running cell ends with KeyboardInterrupt and the kernel keeps its state; an idle kernel ignores
 * it. It runs as its own `docker exec`, never on the supervisor's attached stream, which belongs to
 * the worker. The kernel is the supervisor's child that leads its own session and runs kernel.py.
 */

/**
 * Ends the kernel process from inside a run: the supervisor replaces a kernel that dies with a fresh
 * one (PROTOCOL.md, "Timeouts and deaths"), so the session keeps its container and files and loses
 * its variables, as a Jupyter restart does.
 */
const RESTART_CODE = 'import os, signal\nos.kill(os.getpid(), signal.SIGKILL)';

/** Sessions seen as Jupyter kernels: the REST model, interrupt, restart, and the open sockets of each. */
export class JupyterKernels {
  private readonly peers = new Map<string, Set<KernelPeer>>();

  constructor(private readonly ctx: ApiContext) {}

  connections(id: string): number {
    return this.peers.get(id)?.size ?? 0;
  }

  join(id: string, peer: KernelPeer): () => void {
    let set = this.peers.get(id);
    if (!set) this.peers.set(id, (set = new Set()));
    set.add(peer);
    return () => {
      set!.delete(peer);
      if (set!.size === 0) this.peers.delete(id);
    };
  }

  /** iopub goes to every connection of the kernel, as a Jupyter kernel's IOPub socket does. */
  broadcast(id: string, msg: KernelMessage) {
    for (const p of this.peers.get(id) ?? []) p.send(msg);
  }

  /** Closes every socket (the API is shutting down). */
  closeAll() {
    for (const set of this.peers.values()) for (const p of [...set]) p.close(1001, 'server shutting down');
    this.peers.clear();
  }

  model(rec: SessionRecord): KernelModel {
    return {
      id: rec.id,
      name: KERNEL_NAME,
      last_activity: new Date(rec.lastActiveAt).toISOString(),
      execution_state: rec.status === 'busy' ? 'busy' : rec.status === 'terminated' ? 'dead' : 'idle',
      connections: this.connections(rec.id),
    };
  }

  async start(caller: Caller, body: Pick<CreateSessionBody, 'ttlSeconds'> = {}): Promise<KernelModel> {
    const rec = await this.ctx.core.sessions.create({ ...body, metadata: { origin: 'jupyter' } }, caller);
    return this.model(rec);
  }

  async list(caller: Caller): Promise<KernelModel[]> {
    const { sessions } = await this.ctx.core.sessions.list(caller);
    return sessions.filter((r) => r.status !== 'terminated').map((r) => this.model(r));
  }

  /** Reading the model is no activity: polling clients must not keep a kernel past its TTL. */
  async get(id: string, caller: Caller): Promise<KernelModel> {
    return this.model(await this.ctx.core.sessions.getLive(id, caller, false));
  }

  async shutdown(id: string, caller: Caller): Promise<void> {
    await this.ctx.core.sessions.delete(id, caller, 'deleted');
    for (const p of [...(this.peers.get(id) ?? [])]) p.close(1000, 'kernel shut down');
  }

  /**
   * SIGINT to the kernel while it runs code, sent by the supervisor (the only process that may
   * signal it), through the same relay as file operations: the worker owns the attach stream.
   */
  async interrupt(id: string, caller: Caller): Promise<void> {
    const rec = await this.ctx.core.sessions.getLive(id, caller);
    try {
      await runFileOp(this.ctx.core.sessions.runtime(rec.host), rec.containerId, { op: 'interrupt' }, { timeoutMs: 10_000 });
    } catch (err) {
      throw new SessionboxError('interrupt_failed', `could not interrupt the kernel: ${errMsg(err)}`, 500);
    }
  }

  /** A fresh interpreter in the same container: variables go, files in /work stay. */
  async restart(id: string, caller: Caller): Promise<KernelModel> {
    const rec = await this.ctx.executions.submit(id, { code: RESTART_CODE, timeoutMs: 30_000 }, caller);
    const done = await this.ctx.executions.waitForEnd(rec.id, 90_000);
    if (!done || !done.restarted) {
      throw new SessionboxError('restart_failed', `the kernel did not restart (${done ? done.status : 'no answer'})`, 500);
    }
    return this.get(id, caller);
  }
}

const instances = new WeakMap<ApiContext, JupyterKernels>();

/** The one JupyterKernels of an API process (the REST router and the WebSocket hook share it). */
export function jupyterKernels(ctx: ApiContext): JupyterKernels {
  let k = instances.get(ctx);
  if (!k) instances.set(ctx, (k = new JupyterKernels(ctx)));
  return k;
}
