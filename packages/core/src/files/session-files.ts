import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PassThrough, type Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import type { Config } from '../infra/config';
import { NotFoundError, SessionboxError, UnavailableError, ValidationError } from '../errors/errors';
import { InvalidPathError, checkFilePath } from './file-path';
import type { ContainerRuntime, ExecProcess } from '../runtime/container-runtime';
import type { KernelEvent } from '../runtime/kernel-channel';
import { Keys } from '../infra/keys';
import type { Metrics } from '../infra/metrics';
import { mimeTypeOf } from './mime';
import type { CreateSessionBody, Limits } from '../contract/schemas';
import type { SessionService, SessionServiceOptions, TerminateOptions } from '../sessions/session-service';
import type { Caller } from '../auth/caller';
import type { SessionRecord } from '../sessions/session-store';

/**
 * The image's entry point for one file operation (images/python-runner/PROTOCOL.md, "File
 * operations"). It runs beside the supervisor, never on the attached stream the worker writes
 * executions to: the engine copies each attached client's stdin in pieces, so a second writer
 * there could interleave with an `exec` line and corrupt both. -I: HOME is /work, so the
 * sandbox could otherwise plant a user site dir that runs inside it; -S: faster start.
 */
export const FILEOPS_CMD = ['python3', '-I', '-S', '-B', '/opt/sessionbox/fileops.py'];
const MAX_SESSION_FILES_DEFAULT = 500 * 1024 * 1024;
/** An archive runs inside the reaper's pass: a container that stopped answering must not hold it up for long. */
const ARCHIVE_TIMEOUT_MS = 30_000;
const ARCHIVE_NAME = /^([0-9a-f-]{36})\.(\d+)\.tar\.gz(\.tmp)?$/;

export interface SessionFile {
  path: string;
  size: number;
  mtimeMs: number;
}

export interface FileDownload {
  path: string;
  mimeType: string;
  /** The bytes as they arrive from the container; errors after the first byte destroy it. */
  stream: Readable;
}

export interface ArchiveInfo {
  sessionId: string;
  owner: string;
  /** File name inside `<archiveDir>/<namespace>/`; never a path from the sandbox. */
  file: string;
  size: number;
  files: number;
  createdAt: number;
  expiresAt: number;
  reason: string;
  /** What a restore inherits unless its request says otherwise. */
  ttlSeconds: number;
  limits: Limits;
  metadata: Record<string, string>;
}

export interface RestoreResult {
  session: SessionRecord;
  files: number;
  archiveBytes: number;
}

export class FileTooLargeError extends SessionboxError {
  constructor(code: 'file_too_large' | 'session_files_too_large' | 'archive_too_large', message: string) {
    super(code, message, 413);
  }
}

export interface SessionFilesOptions {
  sessions: SessionService;
  redis: Redis;
  namespace: string;
  maxFileBytes: number;
  /** Cap on all files of one session; null = its diskMb, at most 500 MiB. */
  maxSessionFilesBytes: number | null;
  archiveSeconds: number;
  maxArchiveBytes: number;
  archiveDir: string;
  logger: Logger;
  metrics?: Metrics;
  requestTimeoutMs?: number;
}

function runnerError(ev: KernelEvent, path?: string): SessionboxError {
  const message = String(ev.message ?? 'the session container refused the request');
  switch (ev.code) {
    case 'invalid_path':
      return new InvalidPathError(message);
    case 'not_found':
      return new NotFoundError('file', path ?? '');
    case 'too_large':
      return new FileTooLargeError('file_too_large', message);
    case 'quota_exceeded':
      return new FileTooLargeError('session_files_too_large', message);
    default:
      return new ValidationError(message);
  }
}

/** An upload's session-cap check, done by the first write next to the files it counts. */
interface Quota {
  capBytes: number;
  /** Paths the upload replaces: their current sizes do not count. */
  replacing: string[];
  /** Bytes of the upload's other files. */
  extraBytes: number;
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
  req: { op: string; [k: string]: unknown },
  opts: { data?: Buffer; path?: string; onChunk?: (b: Buffer) => void; timeoutMs?: number } = {},
): Promise<KernelEvent> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  // The process also stops itself a little later, in case this side is gone.
  const line = Buffer.from(JSON.stringify({ ...req, timeoutMs: timeoutMs + 5_000 }) + '\n');
  let proc: ExecProcess;
  try {
    proc = await runtime.exec(containerId, { cmd: FILEOPS_CMD, stdin: opts.data ? [line, opts.data] : [line] });
  } catch (err) {
    throw unreachable(err);
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.close();
  }, timeoutMs);
  try {
    for await (const text of createInterface({ input: proc.stdout, crlfDelay: Infinity })) {
      let ev: KernelEvent;
      try {
        ev = JSON.parse(text);
      } catch {
        continue;
      }
      if (ev?.ev === 'file_chunk') {
        if (typeof ev.dataB64 === 'string') opts.onChunk?.(Buffer.from(ev.dataB64, 'base64'));
        continue;
      }
      if (ev?.ev === 'error') throw runnerError(ev, opts.path);
      if (typeof ev?.ev === 'string') return ev;
    }
  } catch (err) {
    if (err instanceof SessionboxError) throw err;
    throw unreachable(timedOut ? new Error(`no answer in ${timeoutMs} ms`) : err);
  } finally {
    clearTimeout(timer);
    proc.close();
  }
  if (timedOut) throw unreachable(new Error(`no answer in ${timeoutMs} ms`));
  const { exitCode, stderr } = await proc.wait().catch(() => ({ exitCode: null, stderr: '' }));
  const why = stderr.trim().split('\n').slice(-1)[0];
  throw unreachable(new Error(`${req.op} ended without an answer (exit code ${exitCode})${why ? `: ${why.slice(0, 300)}` : ''}`));
}

function unreachable(err: unknown): SessionboxError {
  if (err instanceof SessionboxError) return err;
  return new UnavailableError('session_unreachable', `the session container did not answer: ${(err as Error)?.message ?? err}`);
}

/**
 * Files in and out of a session's working directory, and its archive once it ends. Every byte
 * passes through a process in the container (`runFileOp`: fileops.py, see PROTOCOL.md), which
 * resolves paths itself and never follows a symlink; this host never opens a path the sandbox
 * controls. Archives are opaque `.tar.gz` blobs named by session id.
 */
export class SessionFiles {
  private readonly keys: Keys;
  private readonly bytes: Counter<'direction'>;
  private readonly archives: Counter<'outcome'>;

  constructor(readonly opts: SessionFilesOptions) {
    this.keys = new Keys(opts.namespace);
    const registry = opts.metrics?.registry;
    this.bytes = counter(registry, 'sessionbox_file_bytes_total', 'Bytes moved in and out of session files', ['direction']);
    this.archives = counter(registry, 'sessionbox_archives_total', 'Session archives by outcome', ['outcome']);
  }

  /** Per-session cap on the sum of its files. */
  sessionCap(rec: Pick<SessionRecord, 'limits'>): number {
    return this.opts.maxSessionFilesBytes ?? Math.min(rec.limits.diskMb * 1024 * 1024, MAX_SESSION_FILES_DEFAULT);
  }

  private op(
    rec: SessionRecord,
    req: { op: string; [k: string]: unknown },
    opts: { data?: Buffer; path?: string; onChunk?: (b: Buffer) => void; timeoutMs?: number } = {},
  ): Promise<KernelEvent> {
    return runFileOp(this.opts.sessions.runtime(rec.host), rec.containerId, req, {
      ...opts,
      timeoutMs: opts.timeoutMs ?? this.opts.requestTimeoutMs ?? 120_000,
    });
  }

  // -- live sessions ----------------------------------------------------------------------

  async list(sessionId: string, caller: Caller): Promise<{ files: SessionFile[]; truncated: boolean }> {
    const rec = await this.opts.sessions.getLive(sessionId, caller);
    return this.listOf(rec);
  }

  private async listOf(rec: SessionRecord): Promise<{ files: SessionFile[]; truncated: boolean }> {
    const ev = await this.op(rec, { op: 'file_list' });
    const files = (Array.isArray(ev.files) ? ev.files : []) as SessionFile[];
    return { files: files.map((f) => ({ path: f.path, size: f.size, mtimeMs: f.mtimeMs })), truncated: !!ev.truncated };
  }

  /** Resolves once the first bytes (or the end) arrive, so a missing file is still a clean 404. */
  async read(sessionId: string, path: string, caller: Caller): Promise<FileDownload> {
    checkFilePath(path);
    const rec = await this.opts.sessions.getLive(sessionId, caller);
    const stream = new PassThrough();
    return new Promise<FileDownload>((resolve, reject) => {
      let started = false;
      const start = () => {
        if (started) return;
        started = true;
        resolve({ path, mimeType: mimeTypeOf(path), stream });
      };
      this.op(rec, { op: 'file_read', path, maxBytes: this.opts.maxFileBytes }, {
        path,
        onChunk: (b) => {
          start();
          this.bytes.inc({ direction: 'download' }, b.length);
          stream.write(b);
        },
      }).then(
        () => {
          start();
          stream.end();
        },
        (err) => {
          if (started) stream.destroy(err as Error);
          else reject(err);
        },
      );
    });
  }

  /** The whole file in memory (for tools that hand small files to a model). */
  async readAll(sessionId: string, path: string, caller: Caller): Promise<Buffer> {
    const { stream } = await this.read(sessionId, path, caller);
    const parts: Buffer[] = [];
    for await (const part of stream) parts.push(part as Buffer);
    return Buffer.concat(parts);
  }

  /**
   * Writes several files after checking every path and every cap, so a refused upload writes
   * nothing. A failure half-way removes what this call created.
   */
  async write(sessionId: string, uploads: { path: string; data: Buffer }[], caller: Caller): Promise<SessionFile[]> {
    if (uploads.length === 0) throw new ValidationError('no file in the request', { field: 'files' });
    for (const u of uploads) {
      checkFilePath(u.path);
      if (u.data.length > this.opts.maxFileBytes) {
        throw new FileTooLargeError('file_too_large', `${u.path} is ${u.data.length} bytes, over the ${this.opts.maxFileBytes} byte cap per file`);
      }
    }
    const rec = await this.opts.sessions.getLive(sessionId, caller);
    // The cap is checked in the container by the first write, against the files there now.
    const finalSizes = new Map(uploads.map((u) => [u.path, u.data.length]));
    const total = [...finalSizes.values()].reduce((a, b) => a + b, 0);
    const cap = this.sessionCap(rec);
    if (total > cap) {
      throw new FileTooLargeError('session_files_too_large', `the session's files would take at least ${total} bytes, over its ${cap} byte cap`);
    }
    const written: (SessionFile & { created: boolean })[] = [];
    for (const [i, u] of uploads.entries()) {
      const quota = i === 0 ? { capBytes: cap, replacing: [...finalSizes.keys()], extraBytes: total - u.data.length } : undefined;
      try {
        written.push(await this.writeOne(rec, u.path, u.data, quota));
      } catch (err) {
        // The failed write removed what it created itself; earlier ones are undone here.
        for (const w of written.filter((x) => x.created)) await this.op(rec, { op: 'file_delete', path: w.path }).catch(() => undefined);
        throw err;
      }
    }
    return written.map(({ path, size, mtimeMs }) => ({ path, size, mtimeMs }));
  }

  private async writeOne(rec: SessionRecord, path: string, data: Buffer, quota?: Quota): Promise<SessionFile & { created: boolean }> {
    const done = await this.op(rec, { op: 'file_write', path, size: data.length, maxBytes: this.opts.maxFileBytes, quota }, { path, data });
    if (Number(done.size) !== data.length) throw unreachable(new Error(`${path}: ${done.size} of ${data.length} bytes written`));
    this.bytes.inc({ direction: 'upload' }, data.length);
    return { path: String(done.path), size: Number(done.size), mtimeMs: Number(done.mtimeMs), created: done.created === true };
  }

  async delete(sessionId: string, path: string, caller: Caller): Promise<void> {
    checkFilePath(path);
    const rec = await this.opts.sessions.getLive(sessionId, caller);
    await this.op(rec, { op: 'file_delete', path }, { path });
  }

  // -- archives ---------------------------------------------------------------------------

  private get dir() {
    return join(this.opts.archiveDir, this.opts.namespace);
  }

  /** For `SessionService`'s `beforeTerminate`: archive on expiry, or on delete with keep=files. */
  async beforeTerminate(rec: SessionRecord, reason: string, opts: TerminateOptions = {}): Promise<void> {
    if (reason !== 'expired' && !opts.keepFiles) return;
    if (rec.status === 'terminated') return;
    try {
      await this.archive(rec, reason);
    } catch (err) {
      this.archives.inc({ outcome: 'failed' });
      throw err;
    }
  }

  /** For `SessionService`'s `goneDetails`: tells a 410 whether, and until when, a restore works. */
  async goneDetails(rec: SessionRecord): Promise<Record<string, unknown>> {
    const info = await this.archiveInfo(rec.id);
    if (!info || info.expiresAt <= Date.now()) return { restorable: false };
    return {
      restorable: true,
      restoreUntil: new Date(info.expiresAt).toISOString(),
      hint: `POST /v1/sessions with {"restoreFrom":"${rec.id}"} starts a new session with this one's files (not its variables)`,
    };
  }

  async archiveInfo(sessionId: string): Promise<ArchiveInfo | null> {
    const raw = await this.opts.redis.get(this.keys.archive(sessionId));
    return raw ? (JSON.parse(raw) as ArchiveInfo) : null;
  }

  /** Copies the working directory out of a live container into `<archiveDir>/<namespace>/`. */
  async archive(rec: SessionRecord, reason: string): Promise<ArchiveInfo> {
    const parts: Buffer[] = [];
    let done: KernelEvent;
    try {
      done = await this.op(rec, { op: 'archive', maxBytes: this.opts.maxArchiveBytes }, { onChunk: (b) => parts.push(b), timeoutMs: ARCHIVE_TIMEOUT_MS });
    } catch (err) {
      if (err instanceof FileTooLargeError) {
        throw new FileTooLargeError('archive_too_large', `the working directory is over the ${this.opts.maxArchiveBytes} byte archive cap`);
      }
      throw err;
    }
    const data = Buffer.concat(parts);
    if (data.length !== Number(done.size)) throw new Error(`archive of ${rec.id}: got ${data.length} of ${done.size} bytes`);
    const createdAt = Date.now();
    const expiresAt = createdAt + this.opts.archiveSeconds * 1000;
    const file = `${rec.id}.${expiresAt}.tar.gz`;
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `${file}.tmp`);
    await writeFile(tmp, data, { mode: 0o600 });
    await rename(tmp, join(this.dir, file));
    const info: ArchiveInfo = {
      sessionId: rec.id,
      owner: rec.owner,
      file,
      size: data.length,
      files: Number(done.files ?? 0),
      createdAt,
      expiresAt,
      reason,
      ttlSeconds: rec.ttlSeconds,
      limits: rec.limits,
      metadata: rec.metadata,
    };
    await this.opts.redis.set(this.keys.archive(rec.id), JSON.stringify(info), 'PXAT', expiresAt);
    this.archives.inc({ outcome: 'created' });
    this.opts.logger.info({ sessionId: rec.id, bytes: data.length, files: info.files, expiresAt: new Date(expiresAt).toISOString() }, 'session files archived');
    return info;
  }

  /**
   * `POST /v1/sessions` with `restoreFrom`: a new session with the old one's files in place (and,
   * unless the request says otherwise, its TTL, limits and metadata).
   * Another owner's archive is a 404, a lapsed one a 410; a failed extraction leaves no session.
   */
  async restore(body: CreateSessionBody, caller: Caller): Promise<RestoreResult> {
    const fromId = body.restoreFrom!;
    const info = await this.archiveInfo(fromId);
    const mine = (owner: string) => caller.owner === '*' || owner === caller.owner;
    if (!info || !mine(info.owner)) {
      const old = await this.opts.sessions.store.get(fromId);
      if (old && mine(old.owner)) {
        if (old.status !== 'terminated') {
          throw new SessionboxError('session_not_terminated', `session ${fromId} is still live: keep using it, or delete it with ?keep=files first`, 409);
        }
        throw new SessionboxError(
          'archive_unavailable',
          `session ${fromId} has no archived files (its archive lapsed, or it ended without keep=files)`,
          410,
        );
      }
      throw new NotFoundError('archive', fromId);
    }
    let data: Buffer;
    try {
      if (info.expiresAt <= Date.now()) throw new Error('lapsed');
      data = await readFile(join(this.dir, info.file));
    } catch {
      throw new SessionboxError('archive_expired', `the archive of session ${fromId} has lapsed`, 410);
    }
    // The new session keeps the old one's TTL, limits and metadata unless the request sets them.
    const { restoreFrom: _, ...rest } = body;
    const wanted: CreateSessionBody = {
      ttlSeconds: rest.ttlSeconds ?? info.ttlSeconds,
      limits: rest.limits ?? info.limits,
      metadata: rest.metadata ?? info.metadata,
    };
    const session = await this.opts.sessions.create(wanted, caller, { restoredFrom: fromId });
    try {
      await this.op(session, { op: 'extract', size: data.length, maxBytes: Math.max(this.opts.maxArchiveBytes, data.length) }, { data });
    } catch (err) {
      await this.opts.sessions.runtime(session.host).remove(session.containerId).catch(() => undefined);
      await this.opts.sessions.store.purge(session).catch(() => undefined);
      if (err instanceof FileTooLargeError) {
        throw new FileTooLargeError('archive_too_large', `the archived files do not fit in the new session (limits.diskMb ${session.limits.diskMb})`);
      }
      throw err;
    }
    this.archives.inc({ outcome: 'restored' });
    this.opts.logger.info({ sessionId: session.id, restoredFrom: fromId, files: info.files }, 'session restored from archive');
    return { session, files: info.files, archiveBytes: info.size };
  }

  /** Deletes archives past their time (and temp files a crash left); returns how many files went. */
  async sweepArchives(now = Date.now()): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      const m = ARCHIVE_NAME.exec(name);
      if (!m) continue;
      const full = join(this.dir, name);
      let due = Number(m[2]) <= now;
      if (!due && m[3]) due = await stat(full).then((s) => now - s.mtimeMs > 3_600_000, () => false);
      if (!due) continue;
      if (await unlink(full).then(() => true, () => false)) removed++;
      if (!m[3]) {
        const info = await this.archiveInfo(m[1]).catch(() => null);
        if (info?.file === name) await this.opts.redis.del(this.keys.archive(m[1])).catch(() => undefined);
      }
    }
    if (removed) this.archives.inc({ outcome: 'swept' }, removed);
    return removed;
  }

  /** Nothing to release: every file operation is its own process. Kept for the callers' shutdown paths. */
  async close(): Promise<void> {}
}

function counter<L extends string>(registry: Registry | undefined, name: string, help: string, labelNames: L[]): Counter<L> {
  const existing = registry?.getSingleMetric(name);
  if (existing) return existing as Counter<L>;
  return new Counter<L>({ name, help, labelNames, registers: registry ? [registry] : [] });
}

/**
 * Session hooks for `createCore(config, { sessionHooks })`, forwarding to a SessionFiles that is
 * made after the core (it needs the core's SessionService).
 */
export function sessionFilesHooks(get: () => SessionFiles | undefined): Pick<SessionServiceOptions, 'beforeTerminate' | 'goneDetails'> {
  return {
    beforeTerminate: async (rec, reason, opts) => {
      await get()?.beforeTerminate(rec, reason, opts);
    },
    goneDetails: async (rec) => (await get()?.goneDetails(rec)) ?? null,
  };
}

export function createSessionFiles(
  config: Config,
  deps: { sessions: SessionService; redis: Redis; logger: Logger; metrics?: Metrics },
): SessionFiles {
  return new SessionFiles({
    ...deps,
    namespace: config.namespace,
    maxFileBytes: config.maxFileBytes,
    maxSessionFilesBytes: config.maxSessionFilesBytes,
    archiveSeconds: config.archiveSeconds,
    maxArchiveBytes: config.maxArchiveBytes,
    archiveDir: config.archiveDir,
  });
}
