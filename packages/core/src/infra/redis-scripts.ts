import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Redis, Result } from 'ioredis';

/**
 * The Lua scripts of the stores, one `.lua` file each (infra/lua/), registered on a client with
 * ioredis `defineCommand` (EVALSHA, loaded on first use) as typed commands. Read relative to this
 * file, so tsx and jest (swc) find them alike.
 */
const SCRIPTS = {
  sbSessionTouch: { file: 'session-touch', numberOfKeys: 2 },
  sbSessionSetStatusIfLive: { file: 'session-set-status-if-live', numberOfKeys: 1 },
  sbSessionClaimExpired: { file: 'session-claim-expired', numberOfKeys: 2 },
  sbSessionTerminate: { file: 'session-terminate', numberOfKeys: 4 },
  sbSessionRequeueExpiry: { file: 'session-requeue-expiry', numberOfKeys: 2 },
  sbSessionAdvanceTurn: { file: 'session-advance-turn', numberOfKeys: 1 },
  sbKeyReserveSession: { file: 'key-reserve-session', numberOfKeys: 2 },
  sbKeyAdmitExecution: { file: 'key-admit-execution', numberOfKeys: 1 },
  sbKeyCountExecution: { file: 'key-count-execution', numberOfKeys: 1 },
  sbFigureReserve: { file: 'figure-reserve', numberOfKeys: 2 },
  sbPoolReserve: { file: 'pool-reserve', numberOfKeys: 2 },
  sbPoolPublish: { file: 'pool-publish', numberOfKeys: 2 },
} as const;

type Arg = string | number;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** KEYS session, expiry; ARGV now, id → 1 when touched (never a terminated session). */
    sbSessionTouch(session: string, expiry: string, now: Arg, id: string): Result<number, Context>;
    /** KEYS session; ARGV status → 1 when set (only while live). */
    sbSessionSetStatusIfLive(session: string, status: string): Result<number, Context>;
    /** KEYS session, expiry; ARGV id, now → 1 for exactly one caller when expired and idle. */
    sbSessionClaimExpired(session: string, expiry: string, id: string, now: Arg): Result<number, Context>;
    /** KEYS session, expiry, host set, container alias; ARGV id, now, reason, tombstone ms → 1 when it ended now (the alias goes if it names this session). */
    sbSessionTerminate(session: string, expiry: string, hostSessions: string, alias: string, id: string, now: Arg, reason: string, tombstoneMs: Arg): Result<number, Context>;
    /** KEYS session, expiry; ARGV id → 1 when put back in the expiry index at its recorded expiry (not once terminated). */
    sbSessionRequeueExpiry(session: string, expiry: string, id: string): Result<number, Context>;
    /** KEYS session; ARGV seq → moves the turn past `seq`. */
    sbSessionAdvanceTurn(session: string, seq: Arg): Result<number, Context>;
    /** KEYS owner sessions, owner resources; ARGV max, score, token, max memory, max cpus, memory, cpus → 'ok' or what refused it ('sessions', 'memory_mb', 'cpus'). */
    sbKeyReserveSession(ownerSessions: string, ownerResources: string, max: Arg, score: Arg, token: string, maxMemoryMb: Arg, maxCpus: Arg, memoryMb: Arg, cpus: Arg): Result<string, Context>;
    /** KEYS owner in-flight set; ARGV session id, execution id, max queued, max running sessions, score → 'ok', 'queued' or 'running'. */
    sbKeyAdmitExecution(ownerInFlight: string, sessionId: string, executionId: string, maxQueued: Arg, maxRunning: Arg, score: Arg): Result<string, Context>;
    /** KEYS owner executions; ARGV now, window, max, member → -1 when counted, else ms until a slot frees. */
    sbKeyCountExecution(ownerExecutions: string, now: Arg, windowMs: Arg, max: Arg, member: string): Result<number, Context>;
    /** KEYS session figure bytes, owner figure bytes hash; ARGV bytes, session cap, key budget, session id, retention s → 'ok', 'session' or 'key'. */
    sbFigureReserve(sessionBytes: string, ownerBytes: string, bytes: Arg, sessionMax: Arg, keyMax: Arg, sessionId: string, retentionSeconds: Arg): Result<string, Context>;
    /** KEYS pool list, filling zset; ARGV now, size, deadline, token → 1 when a slot was taken. */
    sbPoolReserve(list: string, filling: string, now: Arg, size: Arg, deadline: Arg, token: string): Result<number, Context>;
    /** KEYS pool list, filling zset; ARGV token, entry → 1 when listed (the slot was still held). */
    sbPoolPublish(list: string, filling: string, token: string, entry: string): Result<number, Context>;
  }
}

let lua: Record<keyof typeof SCRIPTS, string> | null = null;

function sources() {
  lua ??= Object.fromEntries(
    Object.entries(SCRIPTS).map(([name, s]) => [name, readFileSync(join(__dirname, 'lua', `${s.file}.lua`), 'utf8')]),
  ) as Record<keyof typeof SCRIPTS, string>;
  return lua;
}

/** Registers the scripts on a client (once; a client that has them is left as it is). Returns the client. */
export function defineScripts(redis: Redis): Redis {
  if (typeof (redis as Partial<Redis>).sbSessionTouch === 'function') return redis;
  const src = sources();
  for (const [name, s] of Object.entries(SCRIPTS) as [keyof typeof SCRIPTS, (typeof SCRIPTS)[keyof typeof SCRIPTS]][]) {
    redis.defineCommand(name, { lua: src[name], numberOfKeys: s.numberOfKeys });
  }
  return redis;
}
