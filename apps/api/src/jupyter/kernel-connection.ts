import { randomUUID } from 'node:crypto';
import { SessionboxError, type Caller } from '@sessionbox/core';
import type { WebSocket, RawData } from 'ws';
import type { ApiContext } from '../context';
import { followExecution } from './execution-follower';
import type { JupyterKernels, KernelPeer } from './jupyter-kernels';
import {
  MalformedMessageError,
  PROTOCOL_VERSION,
  V1_SUBPROTOCOL,
  makeMessage,
  parseLegacy,
  parseV1,
  serializeLegacy,
  serializeV1,
  type Channel,
  type KernelMessage,
} from './kernel-message';

const LANGUAGE_INFO = {
  name: 'python',
  version: '3.11',
  mimetype: 'text/x-python',
  file_extension: '.py',
  pygments_lexer: 'ipython3',
  codemirror_mode: { name: 'ipython', version: 3 },
  nbconvert_exporter: 'python',
};

/** Waiting for a run's end allows its timeout plus this much for the queue and the kernel's start. */
const END_ALLOWANCE_MS = 120_000;

interface ExecuteContent {
  code?: unknown;
  silent?: unknown;
}

/**
 * One client's WebSocket to a kernel (a session). Shell requests are handled one at a time in
 * arrival order, as a kernel does; control requests (interrupt, shutdown) are not held up by them.
 * iopub messages go to every connection of the kernel.
 */
export class KernelConnection implements KernelPeer {
  /** The kernel side's session id in the headers we send. */
  private readonly session = randomUUID();
  private readonly binary: boolean;
  private shell: Promise<void> = Promise.resolve();
  private readonly aborter = new AbortController();
  private leave: () => void = () => undefined;

  constructor(
    private readonly ctx: ApiContext,
    private readonly kernels: JupyterKernels,
    private readonly ws: WebSocket,
    private readonly kernelId: string,
    private readonly caller: Caller,
  ) {
    this.binary = ws.protocol === V1_SUBPROTOCOL;
  }

  start() {
    this.leave = this.kernels.join(this.kernelId, this);
    this.ws.on('message', (data: RawData, isBinary: boolean) => this.onFrame(data, isBinary));
    this.ws.on('close', () => {
      this.aborter.abort();
      this.leave();
    });
    this.ws.on('error', () => this.ws.terminate());
  }

  send(msg: KernelMessage) {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.binary) this.ws.send(serializeV1(msg), { binary: true });
    else this.ws.send(serializeLegacy(msg));
  }

  close(code: number, reason: string) {
    this.ws.close(code, reason);
  }

  private onFrame(data: RawData, isBinary: boolean) {
    let msg: KernelMessage;
    try {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      msg = this.binary && isBinary ? parseV1(buf) : parseLegacy(buf.toString('utf8'));
    } catch (err) {
      if (!(err instanceof MalformedMessageError)) throw err;
      this.ctx.logger.debug({ kernelId: this.kernelId, err: err.message }, 'malformed kernel message ignored');
      return;
    }
    if (msg.channel === 'control') void this.handle(msg).catch((err) => this.onError(err));
    else if (msg.channel === 'shell') this.shell = this.shell.then(() => this.handle(msg)).catch((err) => this.onError(err));
    // stdin replies are never asked for (allow_stdin is not served); iopub is server-to-client only.
  }

  private onError(err: unknown) {
    this.ctx.logger.warn({ kernelId: this.kernelId, err: (err as Error).message }, 'kernel request failed');
  }

  private reply(req: KernelMessage, type: string, content: Record<string, unknown>) {
    this.send(makeMessage(req.channel as Channel, type, content, req.header, this.session));
  }

  private iopub(req: KernelMessage, type: string, content: Record<string, unknown>, metadata: Record<string, unknown> = {}) {
    this.kernels.broadcast(this.kernelId, makeMessage('iopub', type, content, req.header, this.session, metadata));
  }

  /** Every request is framed by iopub busy and idle, as ipykernel does. */
  private async handle(req: KernelMessage) {
    const type = req.header.msg_type;
    this.iopub(req, 'status', { execution_state: 'busy' });
    try {
      switch (type) {
        case 'kernel_info_request':
          return this.reply(req, 'kernel_info_reply', {
            status: 'ok',
            protocol_version: PROTOCOL_VERSION,
            implementation: 'sessionbox',
            implementation_version: '0.1.0',
            language_info: LANGUAGE_INFO,
            banner: 'sessionbox: a Python kernel in its own container',
            help_links: [],
            debugger: false,
          });
        case 'execute_request':
          return await this.execute(req);
        case 'comm_info_request':
          return this.reply(req, 'comm_info_reply', { status: 'ok', comms: {} });
        case 'history_request':
          return this.reply(req, 'history_reply', { status: 'ok', history: [] });
        case 'is_complete_request':
          return this.reply(req, 'is_complete_reply', { status: 'unknown' });
        case 'interrupt_request':
          await this.kernels.interrupt(this.kernelId, this.caller);
          return this.reply(req, 'interrupt_reply', { status: 'ok' });
        case 'shutdown_request': {
          const restart = req.content.restart === true;
          if (restart) await this.kernels.restart(this.kernelId, this.caller);
          this.reply(req, 'shutdown_reply', { status: 'ok', restart });
          if (!restart) await this.kernels.shutdown(this.kernelId, this.caller);
          return;
        }
        default:
          return this.unknown(req);
      }
    } catch (err) {
      const e = err instanceof SessionboxError ? err : new SessionboxError('internal_error', (err as Error).message, 500);
      this.reply(req, type.replace(/_request$/, '_reply'), { status: 'error', ename: e.code, evalue: e.message, traceback: [`${e.code}: ${e.message}`] });
    } finally {
      this.iopub(req, 'status', { execution_state: 'idle' });
    }
  }

  private unknown(req: KernelMessage) {
    const type = req.header.msg_type;
    const replyType = type.endsWith('_request') ? type.replace(/_request$/, '_reply') : 'error_reply';
    const evalue = `sessionbox does not serve ${type} (served: kernel_info, execute, comm_info, history, is_complete, interrupt, shutdown)`;
    this.reply(req, replyType, { status: 'error', ename: 'NotImplementedError', evalue, traceback: [`NotImplementedError: ${evalue}`] });
  }

  /** An execute_request becomes an execution of the session; its event log becomes iopub messages as it grows. */
  private async execute(req: KernelMessage) {
    const content = req.content as ExecuteContent;
    const code = typeof content.code === 'string' ? content.code : '';
    const silent = content.silent === true;
    const timeoutMs = this.ctx.config.maxTimeoutMs;
    const rec = await this.ctx.executions.submit(this.kernelId, { code, timeoutMs }, this.caller);
    const count = rec.seq;
    if (!silent) this.iopub(req, 'execute_input', { code, execution_count: count });
    let status: 'ok' | 'error' = 'ok';
    let errorContent: Record<string, unknown> = {};
    for await (const ev of followExecution(this.ctx, rec.id, timeoutMs + END_ALLOWANCE_MS, this.aborter.signal)) {
      if (ev.type === 'stdout' || ev.type === 'stderr') {
        if (!silent) this.iopub(req, 'stream', { name: ev.type, text: ev.data });
      } else if (ev.type === 'figure') {
        const png = await this.ctx.core.executionStore.getFigure(ev.figure.id, this.kernelId);
        if (png && !silent) {
          this.iopub(
            req,
            'display_data',
            { data: { 'image/png': png.toString('base64'), 'text/plain': `<Figure size ${ev.figure.width}x${ev.figure.height}>` }, metadata: {}, transient: {} },
          );
        }
      } else if (ev.type === 'done') {
        const end = await this.ctx.core.executionStore.get(rec.id);
        if (!end) throw new SessionboxError('execution_not_found', `execution ${rec.id} expired`, 404);
        for (const note of end.notes) if (!silent) this.iopub(req, 'stream', { name: 'stderr', text: `[sessionbox] ${note}\n` });
        if (end.result !== null && !silent) {
          this.iopub(req, 'execute_result', { execution_count: count, data: { 'text/plain': end.result }, metadata: {} });
        }
        if (end.status !== 'succeeded') {
          status = 'error';
          const err = end.error ?? {
            name: end.status === 'timed_out' ? 'TimeoutError' : 'KernelError',
            value: end.cause ? `the run ended: ${end.cause}` : 'the run failed',
            traceback: '',
          };
          errorContent = { ename: err.name, evalue: err.value, traceback: err.traceback ? err.traceback.split('\n') : [`${err.name}: ${err.value}`] };
          this.iopub(req, 'error', errorContent);
        }
      }
    }
    if (this.aborter.signal.aborted) return;
    this.reply(req, 'execute_reply', { status, execution_count: count, ...(status === 'ok' ? { user_expressions: {}, payload: [] } : errorContent) });
  }
}
