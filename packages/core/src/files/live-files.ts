import { PassThrough, type Readable } from 'node:stream';
import type { Counter } from 'prom-client';
import type { Caller } from '../auth/caller';
import { FileTooLargeError, ValidationError } from '../errors/errors';
import type { Metrics } from '../infra/metrics';
import type { SessionService } from '../sessions/session-service';
import type { SessionRecord } from '../sessions/session-store';
import { checkFilePath } from './file-path';
import { sharedCounter } from './file-metrics';
import { sessionUnreachable, type FileOpsClient } from './fileops-client';
import { mimeTypeOf } from './mime';

const MAX_SESSION_FILES_DEFAULT = 500 * 1024 * 1024;

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

export interface LiveFilesOptions {
  sessions: SessionService;
  fileops: FileOpsClient;
  maxFileBytes: number;
  /** Cap on all files of one session; null = its diskMb, at most 500 MiB. */
  maxSessionFilesBytes: number | null;
  metrics?: Metrics;
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
 * Files in and out of a running session's working directory. Every byte passes through fileops.py
 * in the container (`FileOpsClient`), which resolves paths itself and never follows a symlink.
 */
export class LiveFiles {
  private readonly fileops: FileOpsClient;
  private readonly bytes: Counter<'direction'>;

  constructor(readonly opts: LiveFilesOptions) {
    this.fileops = opts.fileops;
    this.bytes = sharedCounter(opts.metrics?.registry, 'sessionbox_file_bytes_total', 'Bytes moved in and out of session files', ['direction']);
  }

  /** Per-session cap on the sum of its files. */
  sessionCap(rec: Pick<SessionRecord, 'limits'>): number {
    return this.opts.maxSessionFilesBytes ?? Math.min(rec.limits.diskMb * 1024 * 1024, MAX_SESSION_FILES_DEFAULT);
  }

  async list(sessionId: string, caller: Caller): Promise<{ files: SessionFile[]; truncated: boolean }> {
    const rec = await this.opts.sessions.getLive(sessionId, caller);
    return this.listOf(rec);
  }

  private async listOf(rec: SessionRecord): Promise<{ files: SessionFile[]; truncated: boolean }> {
    const ev = await this.fileops.run(rec, { op: 'file_list' });
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
      // A reader that goes away (the client hung up) ends the operation in the container.
      const abort = new AbortController();
      stream.once('close', () => abort.abort());
      this.fileops.run(rec, { op: 'file_read', path, maxBytes: this.opts.maxFileBytes }, {
        path,
        signal: abort.signal,
        onChunk: (b) => {
          start();
          this.bytes.inc({ direction: 'download' }, b.length);
          return stream.write(b);
        },
        // A slow reader holds the container's writer, not this process's memory.
        onFull: (resume) => stream.once('drain', resume),
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
    const rec = await this.opts.sessions.getLive(sessionId, caller, true);
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
        for (const w of written.filter((x) => x.created)) await this.fileops.run(rec, { op: 'file_delete', path: w.path }).catch(() => undefined);
        throw err;
      }
    }
    return written.map(({ path, size, mtimeMs }) => ({ path, size, mtimeMs }));
  }

  private async writeOne(rec: SessionRecord, path: string, data: Buffer, quota?: Quota): Promise<SessionFile & { created: boolean }> {
    const done = await this.fileops.run(rec, { op: 'file_write', path, size: data.length, maxBytes: this.opts.maxFileBytes, quota }, { path, data });
    if (Number(done.size) !== data.length) throw sessionUnreachable(new Error(`${path}: ${done.size} of ${data.length} bytes written`));
    this.bytes.inc({ direction: 'upload' }, data.length);
    return { path: String(done.path), size: Number(done.size), mtimeMs: Number(done.mtimeMs), created: done.created === true };
  }

  async delete(sessionId: string, path: string, caller: Caller): Promise<void> {
    checkFilePath(path);
    const rec = await this.opts.sessions.getLive(sessionId, caller, true);
    await this.fileops.run(rec, { op: 'file_delete', path }, { path });
  }
}
