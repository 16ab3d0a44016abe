import type { Readable, Writable } from 'node:stream';
import type { Limits } from '../contract/schemas';

/** What a session container is made of; the runtime turns it into engine settings. */
export interface SessionContainerSpec {
  name: string;
  image: string;
  labels: Record<string, string>;
  limits: Limits;
  /** OCI runtime: `runc` (default) or `runsc` (gVisor). */
  runtime?: string;
  /** On the engine's default bridge network; otherwise (the default) no network at all. */
  network?: boolean;
  /** The uid (and gid) everything in the container runs as; default: one picked for this container alone. */
  uid?: number;
  /** `low` while it warms unclaimed (a pool refill): it yields the CPU to running sessions. Default `normal`. */
  cpuWeight?: CpuWeight;
  /** The kernel imports numpy, pandas and matplotlib on first use instead of before it answers (a cold session). */
  lazyImports?: boolean;
}

export type CpuWeight = 'low' | 'normal';

export interface ContainerInfo {
  id: string;
  name: string;
  labels: Record<string, string>;
  state: string;
  running: boolean;
  createdAt: Date;
  oomKilled?: boolean;
  exitCode?: number;
  /** The OCI runtime it runs under (`runc`, `runsc`), from `inspect`. */
  ociRuntime?: string;
}

/** The supervisor's stdin and stdout inside a running container. */
export interface AttachedStream {
  stdin: Writable;
  stdout: Readable;
  close(): void;
}

/** A process started beside the supervisor in a running container (`docker exec`). */
export interface ExecProcess {
  /** Its stdout; ends when the process exits or the connection is cut. */
  stdout: Readable;
  /** Once it has exited: its exit code (null if the engine no longer knows) and the start of its stderr. */
  wait(): Promise<{ exitCode: number | null; stderr: string }>;
  /** Cuts the connection (the process sees EOF on stdin and a closed stdout). */
  close(): void;
}

export interface ExecOptions {
  cmd: string[];
  /** Written to its stdin in order, then stdin is closed. */
  stdin: Buffer[];
}

export interface ContainerEvent {
  action: string;
  id: string;
  labels: Record<string, string>;
}

export interface ContainerUsage {
  memoryBytes: number;
  cpuPercent: number | null;
  /** CPU time the container has used since it started (ns), when the engine reports it; two samples give a rate. */
  cpuTotalNs?: number;
}

/** The container engine behind sessionbox (Docker today; a pod per session would fit the same port). */
export interface ContainerRuntime {
  readonly hostName: string;
  /** `signal` abandons the request (a hung engine must not pile up open sockets). */
  ping(opts?: { signal?: AbortSignal }): Promise<void>;
  /** Creates and starts; leaves nothing behind when either step fails. */
  createSessionContainer(spec: SessionContainerSpec): Promise<string>;
  /** Idempotent: a container that is already gone, or being removed, counts as removed. */
  remove(id: string): Promise<void>;
  inspect(id: string): Promise<ContainerInfo | null>;
  /** Changes a running container's CPU weight (its share when the CPUs are contended). */
  setCpuWeight(id: string, weight: CpuWeight): Promise<void>;
  list(labelFilters: string[]): Promise<ContainerInfo[]>;
  attach(id: string): Promise<AttachedStream>;
  /** Runs `cmd` beside the supervisor, as a uid other than the session's (which user code runs as); never through the supervisor's attached stream. */
  exec(id: string, opts: ExecOptions): Promise<ExecProcess>;
  usage(id: string): Promise<ContainerUsage | null>;
  /** The engine's memory (MemTotal), in bytes. */
  memoryBytes(): Promise<number>;
  /**
   * Whole-container checkpoint/restore (hibernation under gVisor, see files/session-checkpoint.ts):
   * whether the engine can do it at all (Docker: its `experimental` setting).
   */
  checkpointsSupported(): Promise<boolean>;
  /** Saves the container's processes and memory to the engine's disk and stops it (the container stays). */
  checkpoint(id: string): Promise<void>;
  /** Starts a stopped container from its checkpoint. */
  restoreCheckpoint(id: string): Promise<void>;
  /** Whether a stopped container holds a hibernation checkpoint; false when the container is gone. */
  hasCheckpoint(id: string): Promise<boolean>;
  /** Idempotent (a container or checkpoint that is gone counts as deleted). */
  deleteCheckpoint(id: string): Promise<void>;
  /** Calls `onEvent` for die/destroy/oom of containers matching the filters; returns a stop function. */
  watch(labelFilters: string[], onEvent: (e: ContainerEvent) => void, onError: (err: Error) => void): Promise<() => void>;
}
