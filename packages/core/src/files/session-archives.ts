import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import type { TerminationReason } from '../errors/termination-reason';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import type { Caller } from '../auth/caller';
import type { CreateSessionBody, Limits } from '../contract/schemas';
import { FileTooLargeError, NotFoundError, SessionboxError } from '../errors/errors';
import { Keys } from '../infra/keys';
import { errMsg } from '../infra/err-msg';
import type { Metrics } from '../infra/metrics';
import type { KernelEvent } from '../runtime/kernel-channel';
import type { SessionService, TerminateOptions } from '../sessions/session-service';
import type { SessionRecord } from '../sessions/session-store';
import { sharedCounter } from './file-metrics';
import type { FileOpsClient } from './fileops-client';

/** An archive runs inside the reaper's pass: a container that stopped answering must not hold it up for long. */
const ARCHIVE_TIMEOUT_MS = 30_000;
const ARCHIVE_NAME = /^([0-9a-f-]{36})\.(\d+)\.tar\.gz(\.tmp)?$/;

export interface ArchiveInfo {
  sessionId: string;
  owner: string;
  /** File name inside `<archiveDir>/<namespace>/`; never a path from the sandbox. */
  file: string;
  size: number;
  files: number;
  createdAt: number;
  expiresAt: number;
  reason: TerminationReason;
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

export interface SessionArchivesOptions {
  sessions: SessionService;
  fileops: FileOpsClient;
  redis: Redis;
  namespace: string;
  archiveSeconds: number;
  maxArchiveBytes: number;
  archiveDir: string;
  logger: Logger;
  metrics?: Metrics;
}

/**
 * A session's working directory once it ends: archived on expiry (or delete with keep=files) as
 * an opaque `.tar.gz` named by session id, restored into a new session, swept when it lapses.
 * This host never opens a path the sandbox controls.
 */
export class SessionArchives {
  private readonly fileops: FileOpsClient;
  private readonly keys: Keys;
  private readonly archives: Counter<'outcome'>;

  constructor(readonly opts: SessionArchivesOptions) {
    this.fileops = opts.fileops;
    this.keys = new Keys(opts.namespace);
    this.archives = sharedCounter(opts.metrics?.registry, 'sessionbox_archives_total', 'Session archives by outcome', ['outcome']);
  }

  private get dir() {
    return join(this.opts.archiveDir, this.opts.namespace);
  }

  /** For `SessionService`'s `beforeTerminate`: archive on expiry, or on delete with keep=files. */
  async beforeTerminate(rec: SessionRecord, reason: TerminationReason, opts: TerminateOptions = {}): Promise<void> {
    if (rec.status === 'hibernated') {
      // Its archive holds the saved state: it goes with the session (DELETE, or past wakeUntil),
      // unless a DELETE with keep=files asked to keep the files for a restore.
      if (!opts.keepFiles || reason === 'expired') await this.drop(rec.id);
      return;
    }
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
  async archive(rec: SessionRecord, reason: TerminationReason, keep: { until?: number; extraBytes?: number } = {}): Promise<ArchiveInfo> {
    const parts: Buffer[] = [];
    let done: KernelEvent;
    const maxBytes = this.opts.maxArchiveBytes + (keep.extraBytes ?? 0);
    try {
      done = await this.fileops.run(rec, { op: 'archive', maxBytes }, { onChunk: (b) => void parts.push(b), timeoutMs: ARCHIVE_TIMEOUT_MS });
    } catch (err) {
      if (err instanceof FileTooLargeError) {
        throw new FileTooLargeError('archive_too_large', `the working directory is over the ${maxBytes} byte archive cap`);
      }
      throw err;
    }
    const data = Buffer.concat(parts);
    if (data.length !== Number(done.size)) throw new Error(`archive of ${rec.id}: got ${data.length} of ${done.size} bytes`);
    const limits = this.opts.sessions.opts.limits;
    const keyBytes = limits?.budget(rec.owner, 'maxArchiveBytes') ?? -1;
    if (keyBytes >= 0 && data.length > keyBytes) {
      throw new FileTooLargeError('archive_too_large', `the working directory (${data.length} bytes packed) is over this API key's archive budget of ${keyBytes} bytes`);
    }
    const createdAt = Date.now();
    const expiresAt = keep.until ?? createdAt + (limits?.limitsFor(rec.owner).archiveSeconds ?? this.opts.archiveSeconds) * 1000;
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
    // A hibernated session's state is not evicted for room (it has its own retention and its
    // session's memory as cap): only archives of ended sessions count against the key's budgets.
    if (keep.until === undefined) {
      await this.keepWithinKeyBudget(info).catch((err) =>
        this.opts.logger.warn({ owner: rec.owner, err: errMsg(err) }, 'could not apply the key archive budget'),
      );
    }
    this.opts.logger.info({ sessionId: rec.id, bytes: data.length, files: info.files, expiresAt: new Date(expiresAt).toISOString() }, 'session files archived');
    return info;
  }

  /**
   * Counts a new archive against its key's count and byte budgets, then deletes that key's oldest
   * archives until it is within both again (the newest is kept: it is what the user just asked for).
   */
  private async keepWithinKeyBudget(info: ArchiveInfo): Promise<void> {
    const limits = this.opts.sessions.opts.limits;
    if (!limits || info.owner === '*') return;
    const [maxCount, maxBytes] = [limits.budget(info.owner, 'maxArchives'), limits.budget(info.owner, 'maxArchiveBytes')];
    const listKey = this.keys.ownerArchives(info.owner);
    const redis = this.opts.redis;
    await redis.zadd(listKey, info.createdAt, info.sessionId);
    if (maxCount < 0 && maxBytes < 0) return;
    const ids = await redis.zrange(listKey, 0, -1);
    const infos = await Promise.all(ids.map((id) => this.archiveInfo(id)));
    // Archives that lapsed (or were swept) leave the key's lists here.
    const live = ids.flatMap((id, i) => (infos[i] && infos[i]!.expiresAt > Date.now() ? [infos[i]!] : []));
    const gone = ids.filter((id) => !live.some((a) => a.sessionId === id));
    let [count, bytes] = [live.length, live.reduce((n, a) => n + a.size, 0)];
    for (const old of live) {
      if (old.sessionId === info.sessionId) continue;
      if ((maxCount < 0 || count <= maxCount) && (maxBytes < 0 || bytes <= maxBytes)) break;
      await unlink(join(this.dir, old.file)).catch(() => undefined);
      await redis.del(this.keys.archive(old.sessionId));
      gone.push(old.sessionId);
      count--;
      bytes -= old.size;
      this.archives.inc({ outcome: 'evicted' });
      this.opts.logger.info({ sessionId: old.sessionId, owner: info.owner, maxCount, maxBytes }, 'archive evicted: its API key is over its archive budget');
    }
    if (gone.length) await redis.zrem(listKey, ...gone);
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
    const data = await this.archiveBytes(info);
    // The new session keeps the old one's TTL, limits and metadata unless the request sets them.
    const { restoreFrom: _, ...rest } = body;
    const wanted: CreateSessionBody = {
      ttlSeconds: rest.ttlSeconds ?? info.ttlSeconds,
      limits: rest.limits ?? info.limits,
      metadata: rest.metadata ?? info.metadata,
    };
    const session = await this.opts.sessions.create(wanted, caller, { restoredFrom: fromId });
    try {
      await this.fileops.run(session, { op: 'extract', size: data.length, maxBytes: Math.max(this.opts.maxArchiveBytes, data.length) }, { data });
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

  /** The archive file's bytes; 410 once it lapsed. */
  async archiveBytes(info: ArchiveInfo): Promise<Buffer> {
    try {
      if (info.expiresAt <= Date.now()) throw new Error('lapsed');
      return await readFile(join(this.dir, info.file));
    } catch {
      throw new SessionboxError('archive_expired', `the archive of session ${info.sessionId} has lapsed`, 410);
    }
  }

  /** Deletes a session's archive (file and record) now; false when it had none. */
  async drop(sessionId: string): Promise<boolean> {
    // By name too: the record lapses at the archive's expiry, before the sweep removes the file.
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const files = names.filter((n) => ARCHIVE_NAME.exec(n)?.[1] === sessionId);
    for (const f of files) await unlink(join(this.dir, f)).catch(() => undefined);
    const had = (await this.opts.redis.del(this.keys.archive(sessionId))) > 0 || files.length > 0;
    if (had) this.archives.inc({ outcome: 'dropped' });
    return had;
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
}
