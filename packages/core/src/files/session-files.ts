import type { Redis } from 'ioredis';
import type { TerminationReason } from '../errors/termination-reason';
import type { Logger } from 'pino';
import type { Caller } from '../auth/caller';
import type { CreateSessionBody } from '../contract/schemas';
import type { Config } from '../infra/config';
import type { Metrics } from '../infra/metrics';
import type { SessionService, SessionServiceOptions, TerminateOptions } from '../sessions/session-service';
import type { SessionRecord } from '../sessions/session-store';
import { FileOpsClient } from './fileops-client';
import { LiveFiles, type FileDownload, type SessionFile } from './live-files';
import { SessionArchives, type ArchiveInfo, type RestoreResult } from './session-archives';
import { SessionHibernation } from './session-hibernation';

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
  /** How long a hibernated session can wake (issue 17). */
  hibernateRetentionSeconds: number;
  /** Cap on one session's saved state; null = its memory limit. */
  hibernateMaxStateBytes: number | null;
  /** Under runsc: checkpoint the whole container when the engine allows it (`auto`), or never (`off`). */
  hibernateCheckpoint?: 'auto' | 'off';
  logger: Logger;
  metrics?: Metrics;
  requestTimeoutMs?: number;
}

/**
 * Files of a session, for the API and the worker: live files while it runs (`LiveFiles`), its
 * archive once it ends (`SessionArchives`), both through one fileops client (`docker exec` of
 * fileops.py, see PROTOCOL.md).
 */
export class SessionFiles {
  readonly live: LiveFiles;
  readonly archives: SessionArchives;
  readonly hibernation: SessionHibernation;

  constructor(readonly opts: SessionFilesOptions) {
    const fileops = new FileOpsClient((host) => opts.sessions.runtime(host), opts.requestTimeoutMs);
    this.live = new LiveFiles({ ...opts, fileops });
    this.archives = new SessionArchives({ ...opts, fileops });
    this.hibernation = new SessionHibernation({ ...opts, fileops, archives: this.archives, retentionSeconds: opts.hibernateRetentionSeconds, maxStateBytes: opts.hibernateMaxStateBytes, checkpoints: opts.hibernateCheckpoint ?? 'auto' });
  }

  sessionCap(rec: Pick<SessionRecord, 'limits'>): number {
    return this.live.sessionCap(rec);
  }
  list(sessionId: string, caller: Caller): Promise<{ files: SessionFile[]; truncated: boolean }> {
    return this.live.list(sessionId, caller);
  }
  read(sessionId: string, path: string, caller: Caller): Promise<FileDownload> {
    return this.live.read(sessionId, path, caller);
  }
  readAll(sessionId: string, path: string, caller: Caller): Promise<Buffer> {
    return this.live.readAll(sessionId, path, caller);
  }
  write(sessionId: string, uploads: { path: string; data: Buffer }[], caller: Caller): Promise<SessionFile[]> {
    return this.live.write(sessionId, uploads, caller);
  }
  delete(sessionId: string, path: string, caller: Caller): Promise<void> {
    return this.live.delete(sessionId, path, caller);
  }

  beforeTerminate(rec: SessionRecord, reason: TerminationReason, opts: TerminateOptions = {}): Promise<void> {
    return this.archives.beforeTerminate(rec, reason, opts);
  }
  goneDetails(rec: SessionRecord): Promise<Record<string, unknown>> {
    return this.archives.goneDetails(rec);
  }
  archiveInfo(sessionId: string): Promise<ArchiveInfo | null> {
    return this.archives.archiveInfo(sessionId);
  }
  archive(rec: SessionRecord, reason: TerminationReason): Promise<ArchiveInfo> {
    return this.archives.archive(rec, reason);
  }
  restore(body: CreateSessionBody, caller: Caller): Promise<RestoreResult> {
    return this.archives.restore(body, caller);
  }
  sweepArchives(now = Date.now()): Promise<number> {
    return this.archives.sweepArchives(now);
  }

  /** Nothing to release: every file operation is its own process. Kept for the callers' shutdown paths. */
  async close(): Promise<void> {}
}

/**
 * Session hooks for `createCore(config, { sessionHooks })`, forwarding to a SessionFiles that is
 * made after the core (it needs the core's SessionService).
 */
export function sessionFilesHooks(get: () => SessionFiles | undefined): Pick<SessionServiceOptions, 'beforeTerminate' | 'goneDetails' | 'hibernate' | 'wake'> {
  return {
    beforeTerminate: async (rec, reason, opts) => {
      await get()?.beforeTerminate(rec, reason, opts);
    },
    goneDetails: async (rec) => (await get()?.goneDetails(rec)) ?? null,
    hibernate: async (rec) => {
      const files = get();
      if (!files) throw new Error('no file service to hibernate with');
      return files.hibernation.hibernate(rec);
    },
    wake: async (rec) => {
      const files = get();
      if (!files) throw new Error('no file service to wake with');
      return files.hibernation.wake(rec);
    },
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
    hibernateRetentionSeconds: config.hibernateRetentionSeconds,
    hibernateMaxStateBytes: config.hibernateMaxStateBytes,
    hibernateCheckpoint: config.hibernateCheckpoint,
  });
}
