import Docker from 'dockerode';
import { once } from 'node:events';
import { PassThrough, type Duplex } from 'node:stream';
import type {
  AttachedStream,
  ContainerEvent,
  ContainerInfo,
  ContainerRuntime,
  ContainerUsage,
  ExecOptions,
  CpuWeight,
  ExecProcess,
  SessionContainerSpec,
} from './container-runtime';
import { randomInt } from 'node:crypto';
import { errMsg } from '../infra/err-msg';
import { UnavailableError } from '../errors/errors';
import { demuxWithBackpressure } from './exec-demux';
import { poll } from '../infra/poll';
import sessionSeccompProfile from './session-seccomp.json';

export interface DockerRuntimeOptions {
  hostName: string;
  /** `unix:///var/run/docker.sock`, `tcp://host:2375`, or a dockerode options object. */
  endpoint: string | Docker.DockerOptions;
  docker?: Docker;
}

/**
 * Each session container runs as a uid of its own, picked at random from this range (never one of
 * the image's or the host's usual accounts): per-user kernel quotas (inotify instances, pipe
 * buffers, RLIMIT_NPROC) are then per session, not shared by every tenant.
 */
export const SANDBOX_UID_MIN = 1_000_000;
export const SANDBOX_UID_MAX = 2_000_000_000;
/**
 * The engine's default seccomp profile minus io_uring, userfaultfd, perf_event_open, the keyring
 * calls and bpf (images/python-runner/seccomp/make-profile.py). gVisor does not apply it; the
 * kernel's own filter (kernel.py) refuses the same calls there.
 */
const SESSION_SECCOMP = JSON.stringify(sessionSeccompProfile);

/** The uid of processes the backend starts in a session container (`exec`): nobody's. */
export const EXEC_UID = 65534;

/** The one checkpoint a hibernated session container holds (Docker stores it with the container, and removes it with it). */
export const HIBERNATION_CHECKPOINT = 'sessionbox-hibernate';

/** dockerode has these calls (lib/container.js); its typings do not. */
interface CheckpointCalls {
  listCheckpoint(): Promise<{ Name: string }[] | Buffer | null>;
  createCheckpoint(body: { CheckpointID: string; Exit: boolean }): Promise<unknown>;
  deleteCheckpoint(name: string): Promise<unknown>;
}
const withCheckpoints = (c: Docker.Container) => c as unknown as CheckpointCalls;

export function pickSandboxUid(): number {
  return randomInt(SANDBOX_UID_MIN, SANDBOX_UID_MAX);
}
/** Bytes of an exec'd process's stderr kept for error messages. */
const EXEC_STDERR_KEEP = 8 * 1024;
const TMP_MB_MAX = 64;
/**
 * gVisor (ptrace platform) runs the sandbox with host threads of its own: ~58 at rest and ~7
 * per sandboxed process (measured with runsc 2022-12). The engine's pids limit counts those,
 * so under runsc it is scaled to keep about `pids` processes for user code.
 */
const RUNSC_PIDS_BASE = 64;
const RUNSC_PIDS_PER_PROCESS = 8;
/**
 * Under gVisor, which does not apply "not dumpable" to /proc/<pid>/fd, the supervisor must not
 * share user code's uid: the container starts as root with only these capabilities, and the
 * runner drops the kernel (all user code) to the session's uid, the owner of /work (runner/ids.py).
 * KILL: signal and sweep user code's processes; SETUID/SETGID: drop the kernel, and act as the
 * session's uid on /work (file operations, the run's file snapshot). User code, a non-root uid
 * under no-new-privileges, holds none of them.
 */
const RUNSC_CAPS = ['KILL', 'SETUID', 'SETGID'];

export function dockerOptionsFromEndpoint(endpoint: string): Docker.DockerOptions {
  if (endpoint.startsWith('unix://')) return { socketPath: endpoint.slice('unix://'.length) };
  const url = new URL(endpoint.replace(/^tcp:/, 'http:'));
  return { host: url.hostname, port: Number(url.port || 2375), protocol: 'http' };
}

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}

/**
 * What the container holds besides the user's memoryMb and diskMb: the supervisor (~14 MiB), the
 * kernel as loaded with numpy, pandas and matplotlib (~62 MiB charged), a fileops exec (~15 MiB),
 * measured at 76 MiB at rest under runc; the rest is headroom.
 */
export const RUNTIME_ALLOWANCE_MB = 128;

/** The engine's memory cap of a session container, in MiB (also what host budgets count). */
export function engineMemoryMb(limits: { memoryMb: number; diskMb: number }): number {
  return limits.memoryMb + limits.diskMb + RUNTIME_ALLOWANCE_MB;
}

/**
 * Docker's CPU shares (cgroup v2: cpu.weight 1 for 2, 100 for 1024): a warming container at 2
 * gets about 1/512 of a contended CPU beside a running session, and all of an idle one.
 */
export const CPU_SHARES: Record<CpuWeight, number> = { low: 2, normal: 1024 };

/**
 * memoryMb is the interpreter's own limit: the kernel sets its RLIMIT_DATA to what it holds when
 * ready plus memoryMb (SESSIONBOX_KERNEL_MEMORY_BYTES, passed on by the supervisor), so code gets a MemoryError past
 * it and the session lives on. Writable space is tmpfs, whose pages the kernel charges to the
 * container's memory cgroup, so the engine limit is memory + disk + the runtime's allowance: the
 * backstop, and files up to diskMb stay writable on top of a full interpreter.
 */
export function hostConfigFor(spec: SessionContainerSpec, uid: number): Docker.HostConfig {
  const { diskMb, cpus, pids } = spec.limits;
  const tmpMb = Math.min(TMP_MB_MAX, Math.max(4, Math.floor(diskMb / 4)));
  const workMb = diskMb - tmpMb;
  const mem = engineMemoryMb(spec.limits) * 1024 * 1024;
  const tmpfsOpts = `rw,nosuid,nodev,uid=${uid},gid=${uid}`;
  return {
    Memory: mem,
    MemorySwap: mem,
    MemorySwappiness: 0,
    NanoCpus: Math.round(cpus * 1e9),
    CpuShares: CPU_SHARES[spec.cpuWeight ?? 'normal'],
    PidsLimit: spec.runtime === 'runsc' ? RUNSC_PIDS_BASE + pids * RUNSC_PIDS_PER_PROCESS : pids,
    NetworkMode: spec.network ? 'bridge' : 'none',
    ReadonlyRootfs: true,
    // /work allows exec (a user may run a helper binary; Python with ctypes can make any system
    // call anyway, so noexec guards nothing there); /tmp keeps Docker's noexec default.
    Tmpfs: {
      '/work': `${tmpfsOpts},exec,size=${workMb}m,mode=0700`,
      '/tmp': `${tmpfsOpts},size=${tmpMb}m,mode=1777`,
    },
    CapDrop: ['ALL'],
    ...(spec.runtime === 'runsc' ? { CapAdd: RUNSC_CAPS } : {}),
    SecurityOpt: ['no-new-privileges:true', `seccomp=${SESSION_SECCOMP}`],
    // No engine init: the supervisor is PID 1 itself. An init (tini) would run as the same uid,
    // dumpable, holding the protocol pipes: user code could ptrace it or open /proc/1/fd/0 and 1,
    // and signal it (tini forwards SIGTERM to the supervisor). As a non-dumpable PID 1 the
    // supervisor is out of ptrace's and /proc's reach and ignores every signal sent from inside.
    Init: false,
    IpcMode: 'private',
    Ulimits: [
      { Name: 'core', Soft: 0, Hard: 0 },
      { Name: 'nofile', Soft: 1024, Hard: 1024 },
    ],
    LogConfig: { Type: 'none', Config: {} },
    AutoRemove: false,
    ...(spec.runtime && spec.runtime !== 'runc' ? { Runtime: spec.runtime } : {}),
  };
}

export class DockerRuntime implements ContainerRuntime {
  readonly hostName: string;
  readonly docker: Docker;

  constructor(opts: DockerRuntimeOptions) {
    this.hostName = opts.hostName;
    this.docker =
      opts.docker ??
      new Docker(typeof opts.endpoint === 'string' ? dockerOptionsFromEndpoint(opts.endpoint) : opts.endpoint);
  }

  async ping(opts: { signal?: AbortSignal } = {}): Promise<void> {
    // dockerode takes `abortSignal` here; its typings only know ping().
    await (this.docker.ping as (o: { abortSignal?: AbortSignal }) => Promise<unknown>).call(this.docker, { abortSignal: opts.signal });
  }

  async createSessionContainer(spec: SessionContainerSpec): Promise<string> {
    let container: Docker.Container;
    const uid = spec.uid ?? pickSandboxUid();
    try {
      container = await this.docker.createContainer({
        name: spec.name,
        Image: spec.image,
        Labels: spec.labels,
        // Under runsc the supervisor is root (see RUNSC_CAPS) and user code the session's uid.
        User: spec.runtime === 'runsc' ? '0:0' : `${uid}:${uid}`,
        WorkingDir: '/work',
        Hostname: 'sandbox',
        OpenStdin: true,
        StdinOnce: false,
        AttachStdin: false,
        AttachStdout: false,
        AttachStderr: false,
        Tty: false,
        NetworkDisabled: !spec.network,
        Env: [
          `SESSIONBOX_KERNEL_MEMORY_BYTES=${spec.limits.memoryMb * 1024 * 1024}`,
          ...(spec.lazyImports ? ['SESSIONBOX_IMPORTS=lazy'] : []),
        ],
        HostConfig: hostConfigFor(spec, uid),
      });
    } catch (err) {
      throw this.engineRefused('create', err);
    }
    try {
      await container.start();
    } catch (err) {
      await this.remove(container.id).catch(() => undefined);
      throw this.engineRefused('start', err);
    }
    return container.id;
  }

  private engineRefused(step: string, err: unknown): Error {
    const message = (err as Error)?.message ?? String(err);
    return new UnavailableError('container_start_failed', `the Docker engine refused to ${step} the session container: ${message}`);
  }

  async remove(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return;
      // A conflict on a forced removal is another removal under way: done once the engine shows it going or gone.
      if (status === 409 && (await this.removing(id))) return;
      throw err;
    }
  }

  private async removing(id: string): Promise<boolean> {
    const info = await this.inspect(id).catch(() => undefined);
    return info === null || info?.state === 'removing';
  }

  async setCpuWeight(id: string, weight: CpuWeight): Promise<void> {
    await this.docker.getContainer(id).update({ CpuShares: CPU_SHARES[weight] });
  }

  async inspect(id: string): Promise<ContainerInfo | null> {
    try {
      const c = await this.docker.getContainer(id).inspect();
      return {
        id: c.Id,
        name: c.Name.replace(/^\//, ''),
        labels: c.Config.Labels ?? {},
        state: c.State.Status,
        running: c.State.Running,
        createdAt: new Date(c.Created),
        oomKilled: c.State.OOMKilled,
        exitCode: c.State.ExitCode,
        ociRuntime: c.HostConfig?.Runtime || 'runc',
      };
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async list(labelFilters: string[]): Promise<ContainerInfo[]> {
    const list = await this.docker.listContainers({ all: true, filters: { label: labelFilters } });
    return list.map((c) => ({
      id: c.Id,
      name: (c.Names[0] ?? '').replace(/^\//, ''),
      labels: c.Labels ?? {},
      state: c.State,
      running: c.State === 'running',
      createdAt: new Date(c.Created * 1000),
    }));
  }

  async attach(id: string): Promise<AttachedStream> {
    const container = this.docker.getContainer(id);
    const stream = (await container.attach({
      stream: true,
      stdin: true,
      stdout: true,
      stderr: true,
      hijack: true,
    })) as unknown as NodeJS.ReadWriteStream & { destroy(): void };
    // The engine lets a stopped container be attached, and that stream then never ends: look once
    // attached (a container that stops later closes the stream, so nothing falls between the two).
    const running = await container.inspect().then(
      (c) => c.State.Running,
      (err) => {
        stream.destroy();
        throw err;
      },
    );
    if (!running) {
      stream.destroy();
      throw Object.assign(new Error(`container ${id} is not running`), { statusCode: 409 });
    }
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    demuxWithBackpressure(stream, stdout, stderr);
    stderr.resume();
    stream.on('end', () => stdout.end());
    stream.on('close', () => stdout.end());
    stream.on('error', (err: Error) => stdout.destroy(err));
    return {
      stdin: stream as unknown as NodeJS.WritableStream as never,
      stdout,
      close: () => stream.destroy(),
    };
  }

  async exec(id: string, opts: ExecOptions): Promise<ExecProcess> {
    const exec = await this.docker.getContainer(id).exec({
      Cmd: opts.cmd,
      // Not the session's uid: user code runs as that one and could otherwise open this
      // process's /proc/<pid>/fd before it made itself non-dumpable, and forge its answer.
      // fileops.py then only relays to the supervisor (PROTOCOL.md, "File operations").
      User: `${EXEC_UID}:${EXEC_UID}`,
      WorkingDir: '/',
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
    });
    const stream = (await exec.start({ hijack: true, stdin: true })) as Duplex;
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let errText = '';
    stderr.on('data', (b: Buffer) => {
      if (errText.length < EXEC_STDERR_KEEP) errText += b.toString('utf8');
    });
    demuxWithBackpressure(stream, stdout, stderr);
    const ended = Promise.race([once(stream, 'end'), once(stream, 'close')]).catch(() => undefined);
    stream.on('end', () => stdout.end());
    stream.on('close', () => stdout.end());
    // A cut connection just ends stdout (e.g. EPIPE on stdin the process stopped reading after it
    // answered): the answer, or its absence, is in what came before, and nobody may be listening.
    stream.on('error', () => stdout.end());
    // Ending our side half-closes the connection: the engine then closes the process's stdin.
    for (const part of opts.stdin) stream.write(part);
    stream.end();
    return {
      stdout,
      close: () => stream.destroy(),
      wait: async () => {
        await ended;
        // The engine may still report it running for a moment after its output ended.
        const info = await poll(
          async () => {
            const i = await exec.inspect().catch(() => null);
            return i === null || !i.Running ? i : undefined;
          },
          { tries: 50, delayMs: 20 },
        );
        return { exitCode: info?.ExitCode ?? null, stderr: errText.slice(0, EXEC_STDERR_KEEP) };
      },
    };
  }

  async checkpointsSupported(): Promise<boolean> {
    return (await this.docker.info()).ExperimentalBuild === true;
  }

  async checkpoint(id: string): Promise<void> {
    const container = this.docker.getContainer(id);
    // A checkpoint left from an earlier hibernation (its delete failed) would refuse the new one.
    await this.deleteCheckpoint(id);
    // No `docker exec` may be alive (a file operation just answered but still exiting): gVisor would
    // save its stdio, host descriptors that do not exist at restore ("failed to set host FD … bad file
    // descriptor"). The engine drops an exec from ExecIDs once it has exited.
    const idle = await poll(async () => ((await container.inspect()).ExecIDs?.length ? undefined : true), { tries: 50, delayMs: 100 });
    if (!idle) throw new Error(`container ${id} still runs a docker exec; not checkpointed`);
    await withCheckpoints(container).createCheckpoint({ CheckpointID: HIBERNATION_CHECKPOINT, Exit: true });
  }

  async restoreCheckpoint(id: string): Promise<void> {
    // `?checkpoint=` in the query and no body: the engine refuses a start with a request body.
    await this.docker.getContainer(id).start({ _query: { checkpoint: HIBERNATION_CHECKPOINT }, _body: {} } as never);
  }

  async hasCheckpoint(id: string): Promise<boolean> {
    try {
      const list = await withCheckpoints(this.docker.getContainer(id)).listCheckpoint();
      // No checkpoints: the engine's answer is not a JSON list, and dockerode hands back its bytes.
      return Array.isArray(list) && list.some((c) => c.Name === HIBERNATION_CHECKPOINT);
    } catch (err) {
      // No such container, or an engine without checkpoints (not "experimental"): it holds none.
      if (statusOf(err) === 404 || statusOf(err) === 501 || /experimental/i.test(errMsg(err))) return false;
      throw err;
    }
  }

  async deleteCheckpoint(id: string): Promise<void> {
    try {
      await withCheckpoints(this.docker.getContainer(id)).deleteCheckpoint(HIBERNATION_CHECKPOINT);
    } catch (err) {
      // 404: no such container; the engine answers a missing checkpoint with a 500 naming the file.
      if (statusOf(err) === 404 || (statusOf(err) === 500 && !(await this.hasCheckpoint(id)))) return;
      throw err;
    }
  }

  async memoryBytes(): Promise<number> {
    return Number((await this.docker.info()).MemTotal);
  }

  async usage(id: string): Promise<ContainerUsage | null> {
    try {
      const s = (await this.docker.getContainer(id).stats({ stream: false, 'one-shot': true } as never)) as unknown as {
        memory_stats?: { usage?: number; stats?: { cache?: number; total_inactive_file?: number } };
        cpu_stats?: { cpu_usage?: { total_usage?: number } };
      };
      const usage = s.memory_stats?.usage ?? 0;
      const inactive = s.memory_stats?.stats?.total_inactive_file ?? 0;
      const cpu = s.cpu_stats?.cpu_usage?.total_usage;
      return { memoryBytes: Math.max(0, usage - inactive), cpuPercent: null, ...(typeof cpu === 'number' ? { cpuTotalNs: cpu } : {}) };
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async watch(
    labelFilters: string[],
    onEvent: (e: ContainerEvent) => void,
    onError: (err: Error) => void,
  ): Promise<() => void> {
    const stream = (await this.docker.getEvents({
      filters: { type: ['container'], event: ['die', 'destroy', 'oom'], label: labelFilters },
    })) as NodeJS.ReadableStream & { destroy?: () => void };
    let buf = '';
    let stopped = false;
    stream.on('data', (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        try {
          const ev = JSON.parse(line) as { Action: string; Actor: { ID: string; Attributes: Record<string, string> } };
          onEvent({ action: ev.Action, id: ev.Actor.ID, labels: ev.Actor.Attributes ?? {} });
        } catch {
          // a partial or foreign line: ignore it
        }
      }
    });
    stream.on('error', (err: Error) => !stopped && onError(err));
    stream.on('end', () => !stopped && onError(new Error('engine event stream ended')));
    return () => {
      stopped = true;
      stream.destroy?.();
    };
  }
}
