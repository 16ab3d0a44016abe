import { z } from 'zod';
import { ERROR_CODES } from '../errors/error-code';
import { TERMINATION_REASONS } from '../errors/termination-reason';

/** The REST contract, v1. These schemas validate requests and generate /openapi.json. */

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.enum(ERROR_CODES).meta({ example: 'session_not_found' }),
      message: z.string(),
      reason: z.enum(TERMINATION_REASONS).optional().meta({ description: 'Why the session ended (410 only).' }),
    }),
  })
  .meta({ id: 'Error' });

export const Limits = z
  .object({
    memoryMb: z.number().int().min(64).max(65536).default(512).meta({ description: 'Memory limit (MiB), swap off.' }),
    cpus: z.number().min(0.05).max(64).default(1).meta({ description: 'CPU share, in cores.' }),
    pids: z.number().int().min(16).max(4096).default(128).meta({ description: 'Max processes and threads.' }),
    diskMb: z.number().int().min(16).max(16384).default(512).meta({ description: 'Writable space (working dir + /tmp), MiB.' }),
  })
  .strict()
  .meta({ id: 'Limits' });
export type Limits = z.infer<typeof Limits>;
export const DEFAULT_LIMITS: Limits = Limits.parse({});

export const Metadata = z
  .record(z.string().min(1).max(64), z.string().max(1024))
  .refine((m) => Object.keys(m).length <= 16, { message: 'at most 16 keys' })
  .meta({ id: 'Metadata', description: 'Free-form string labels (≤ 16 keys).' });

export const CreateSessionBody = z
  .object({
    ttlSeconds: z.number().int().min(10).max(86400).optional().meta({ description: 'Idle TTL in seconds (default 600).' }),
    limits: Limits.partial().strict().optional(),
    metadata: Metadata.optional(),
    restoreFrom: z.uuid().optional().meta({ description: 'Id of an expired or deleted session whose files to restore.' }),
  })
  .strict()
  .meta({ id: 'CreateSessionRequest' });
export type CreateSessionBody = z.infer<typeof CreateSessionBody>;

export const SessionStatus = z.enum(['ready', 'busy', 'terminated']);
export type SessionStatus = z.infer<typeof SessionStatus>;

export const Session = z
  .object({
    id: z.uuid(),
    status: SessionStatus,
    createdAt: z.iso.datetime(),
    lastActiveAt: z.iso.datetime(),
    expiresAt: z.iso.datetime(),
    ttlSeconds: z.number().int(),
    limits: Limits,
    metadata: z.record(z.string(), z.string()),
    host: z.string().meta({ description: 'Docker host holding the container.' }),
    terminatedAt: z.iso.datetime().nullable().optional(),
    terminationReason: z.enum(TERMINATION_REASONS).nullable().optional(),
    restoredFrom: z.uuid().optional().meta({ description: 'The expired or deleted session whose files this one started with.' }),
    owner: z.string().optional().meta({ description: 'Name of the API key that made the session (shown to the admin key only).' }),
    memoryRestored: z
      .boolean()
      .optional()
      .meta({ description: 'Always false on a restored session: files come back, variables and imports do not.' }),
    notes: z.array(z.string()).optional().meta({ description: 'Remarks on how the session was made, e.g. what a restore brought back.' }),
  })
  .meta({ id: 'Session' });
export type Session = z.infer<typeof Session>;

export const SessionList = z
  .object({
    sessions: z.array(Session),
    nextCursor: z.string().nullable().meta({ description: 'Pass as `cursor` for the next page; null when this page is the last.' }),
  })
  .meta({ id: 'SessionList' });

/** A run's wall-clock limit when the request gives none. */
export const DEFAULT_EXECUTION_TIMEOUT_MS = 30_000;

export const ExecuteBody = z
  .object({
    code: z.string().meta({ description: 'Python source, run like a notebook cell.' }),
    timeoutMs: z.number().int().min(100).optional().meta({ description: `Wall-clock limit of the run (default ${DEFAULT_EXECUTION_TIMEOUT_MS}).` }),
  })
  .strict()
  .meta({ id: 'ExecuteRequest' });
export type ExecuteBody = z.infer<typeof ExecuteBody>;

export const ExecutionStatus = z.enum(['queued', 'running', 'succeeded', 'failed', 'timed_out']);
export type ExecutionStatus = z.infer<typeof ExecutionStatus>;
export const TERMINAL_STATUSES: ReadonlySet<ExecutionStatus> = new Set(['succeeded', 'failed', 'timed_out']);

export const Figure = z
  .object({
    id: z.string(),
    mimeType: z.literal('image/png'),
    url: z.string(),
    width: z.number().int(),
    height: z.number().int(),
  })
  .meta({ id: 'Figure' });
export type Figure = z.infer<typeof Figure>;

export const OutputFile = z
  .object({ path: z.string(), size: z.number().int(), mimeType: z.string(), url: z.string() })
  .meta({ id: 'OutputFile' });
export type OutputFile = z.infer<typeof OutputFile>;

export const ExecutionError = z
  .object({ name: z.string(), value: z.string(), traceback: z.string() })
  .meta({ id: 'ExecutionError' });
export type ExecutionError = z.infer<typeof ExecutionError>;

/**
 * How a run ended, as the runner reports it. The one definition behind the stored record
 * (`ExecutionRecord`), the runner's `done` event and the API's `Execution`.
 */
export const ExecutionOutcome = z.object({
  status: ExecutionStatus,
  result: z.string().nullable(),
  error: ExecutionError.nullable(),
  restarted: z.boolean().meta({ description: 'The interpreter was restarted during this run: earlier state is lost.' }),
  cause: z
    .enum(['timeout', 'oom', 'pids', 'output_cap', 'killed', 'aborted', 'worker_lost', 'session_terminated'])
    .nullable()
    .meta({ description: 'Why the run was stopped, when it was.' }),
  usage: z.object({ cpuMs: z.number(), peakMemoryBytes: z.number() }).nullable(),
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
  notes: z.array(z.string()),
});
export type ExecutionOutcome = z.infer<typeof ExecutionOutcome>;

/** The outcome of a run that has not ended (a new record): nothing yet. */
export function pendingOutcome(): ExecutionOutcome {
  return { status: 'queued', result: null, error: null, restarted: false, cause: null, usage: null, stdoutTruncated: false, stderrTruncated: false, notes: [] };
}

/** A run that failed before or outside the code: `name: value` as its error. */
export function failedOutcome(name: string, value: string, cause: ExecutionOutcome['cause'] = null): ExecutionOutcome {
  return { ...pendingOutcome(), status: 'failed', cause, error: { name, value, traceback: `${name}: ${value}` } };
}

export const Execution = z
  .object({
    id: z.uuid(),
    sessionId: z.uuid(),
    ...ExecutionOutcome.shape,
    stdout: z.string(),
    stderr: z.string(),
    figures: z.array(Figure),
    files: z.array(OutputFile),
    queuedAt: z.iso.datetime(),
    startedAt: z.iso.datetime().nullable(),
    finishedAt: z.iso.datetime().nullable(),
    durationMs: z.number().int().nullable(),
    timeoutMs: z.number().int(),
  })
  .meta({ id: 'Execution' });
export type Execution = z.infer<typeof Execution>;

export const QueuedExecution = z
  .object({ id: z.uuid(), sessionId: z.uuid(), status: z.literal('queued') })
  .meta({ id: 'QueuedExecution' });

export const SessionIdParams = z.object({ id: z.uuid() });
export const ExecutionParams = z.object({ id: z.uuid(), executionId: z.uuid() });
