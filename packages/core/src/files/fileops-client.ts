import { randomUUID } from 'node:crypto';
import { SessionboxError, UnavailableError } from '../errors/errors';
import type { ContainerRuntime, ExecProcess } from '../runtime/container-runtime';
import { MAX_LINE_BYTES, type KernelEvent } from '../runtime/kernel-channel';
import { LineSplitter } from '../runtime/line-splitter';
import { RUNNER_ERRORS, runnerErrorCode } from '../runtime/runner-errors';
import type { SessionRecord } from '../sessions/session-store';

/**
 * The image's entry point for one file operation (images/python-runner/PROTOCOL.md, "File
 * operations"). It runs beside the supervisor, never on the attached stream the worker writes
 * executions to: the engine copies each attached client's stdin in pieces, so a second writer
 * there could interleave with an `exec` line and corrupt both. -I: HOME is /work, so the
 * sandbox could otherwise plant a user site dir that runs inside it; -S: faster start.
 */
export const FILEOPS_CMD = ['python3', '-I', '-S', '-B', '/opt/sessionbox/fileops.py'];
const REQUEST_TIMEOUT_MS = 120_000;

/** One request to fileops.py (PROTOCOL.md, "File operations"). */
export interface FileOpRequest {
  op: string;
  [k: string]: unknown;
}

export interface FileOpOptions {
  /** Bytes sent after the request line (an upload, an archive to extract). */
  data?: Buffer;
  /** The file the request is about, for the 404 a `not_found` answer becomes. */
  path?: string;
  /**
   * Each `file_chunk`'s bytes. Return false when the reader is full: reading from the container
   * stops until `drained` is called back.
   */
  onChunk?: (b: Buffer) => boolean | void;
  /** Calls `resume` once the reader that returned false from `onChunk` can take more. */
  onFull?: (resume: () => void) => void;
  /** Most bytes the answer's chunks may carry in all (default: the request's `maxBytes`, else 1 GiB). */
  maxAnswerBytes?: number;
  /** Stops the operation (the process is cut off) when it fires. */
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** Longest event line fileops.py sends: a 1 MiB chunk in base64, or a list of at most 8 MiB of escaped paths, with room to spare. */
const MAX_ANSWER_LINE_BYTES = MAX_LINE_BYTES;
const DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024 * 1024;

function runnerError(ev: KernelEvent, path?: string): SessionboxError {
  return RUNNER_ERRORS[runnerErrorCode(ev.code)](String(ev.message ?? 'the session container refused the request'), path);
}

/**
 * Runs one file operation in the container (one `docker exec` of FILEOPS_CMD): the request line,
 * then `data`, go to its stdin; `file_chunk` payloads go to `onChunk`; resolves with the final
 * event. An `error` answer becomes the matching SessionboxError, a process that dies or does not
 * answer in `timeoutMs` a 503 `session_unreachable`.
 */
export async function runFileOp(
  runtime: ContainerRuntime,
  containerId: string,
  req: FileOpRequest,
  opts: FileOpOptions = {},
): Promise<KernelEvent> {
  const timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS;
  // A fresh id per operation: fileops.py puts it on every event, and an event without it (written
  // by anything else that reached the pipe) is ignored.
  const id = randomUUID();
  const cap = opts.maxAnswerBytes ?? (typeof req.maxBytes === 'number' ? req.maxBytes : DEFAULT_MAX_ANSWER_BYTES);
  // The process also stops itself a little later, in case this side is gone.
  const line = Buffer.from(JSON.stringify({ ...req, id, timeoutMs: timeoutMs + 5_000 }) + '\n');
  let proc: ExecProcess;
  try {
    proc = await runtime.exec(containerId, { cmd: FILEOPS_CMD, stdin: opts.data ? [line, opts.data] : [line] });
  } catch (err) {
    throw sessionUnreachable(err);
  }
  const stdout = proc.stdout;
  return new Promise<KernelEvent>((resolve, reject) => {
    let settled = false;
    let received = 0;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      proc.close();
      fn();
    };
    const fail = (err: unknown) => finish(() => reject(err instanceof SessionboxError ? err : sessionUnreachable(err)));
    const timer = setTimeout(() => fail(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    const onAbort = () => fail(new Error('the operation was cancelled'));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.signal?.aborted) return onAbort();

    const lines = new LineSplitter(MAX_ANSWER_LINE_BYTES, (raw) => {
      if (settled) return;
      let ev: KernelEvent;
      try {
        ev = JSON.parse(raw.toString('utf8'));
      } catch {
        return;
      }
      if (!ev || typeof ev !== 'object' || ev.id !== id || typeof ev.ev !== 'string') return;
      if (ev.ev === 'file_chunk') {
        if (typeof ev.dataB64 !== 'string') return;
        const b = Buffer.from(ev.dataB64, 'base64');
        received += b.length;
        if (received > cap) return fail(new Error(`the answer to ${req.op} went past ${cap} bytes`));
        if (opts.onChunk?.(b) === false && opts.onFull) {
          stdout.pause();
          opts.onFull(() => stdout.resume());
        }
        return;
      }
      if (ev.ev === 'error') return finish(() => reject(runnerError(ev, opts.path)));
      finish(() => resolve(ev));
    });
    stdout.on('data', (chunk: Buffer) => lines.push(chunk));
    stdout.on('error', fail);
    stdout.on('end', () => {
      if (settled) return;
      void proc
        .wait()
        .catch(() => ({ exitCode: null, stderr: '' }))
        .then(({ exitCode, stderr }) => {
          const why = stderr.trim().split('\n').slice(-1)[0];
          fail(new Error(`${req.op} ended without an answer (exit code ${exitCode})${why ? `: ${why.slice(0, 300)}` : ''}`));
        });
    });
  });
}

/** An answer that did not come (the process died, stalled, or the engine refused the exec) as a 503 `session_unreachable`. */
export function sessionUnreachable(err: unknown): SessionboxError {
  if (err instanceof SessionboxError) return err;
  return new UnavailableError('session_unreachable', `the session container did not answer: ${(err as Error)?.message ?? err}`);
}

/** `runFileOp` against a session's container, with one default timeout. */
export class FileOpsClient {
  constructor(
    private readonly runtimeOf: (host: string) => ContainerRuntime,
    private readonly timeoutMs = REQUEST_TIMEOUT_MS,
  ) {}

  run(rec: Pick<SessionRecord, 'host' | 'containerId'>, req: FileOpRequest, opts: FileOpOptions = {}): Promise<KernelEvent> {
    return runFileOp(this.runtimeOf(rec.host), rec.containerId, req, { ...opts, timeoutMs: opts.timeoutMs ?? this.timeoutMs });
  }
}
