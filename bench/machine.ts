import { readFileSync, readdirSync, existsSync } from 'node:fs';
import os from 'node:os';
import { docker } from './system';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memTotalBytes: number;
  memAvailableBytes: number;
  kernel: string;
  os: string;
  docker: string;
  cgroup: string;
  node: string;
  loadAvg: number[];
}

export function meminfo(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync('/proc/meminfo', 'utf8').split('\n')) {
    const m = /^(\w+):\s+(\d+)(?: kB)?/.exec(line);
    if (m) out[m[1]] = Number(m[2]) * (line.includes('kB') ? 1024 : 1);
  }
  return out;
}

export async function machineInfo(): Promise<MachineInfo> {
  const v = await docker.version().catch(() => null);
  const info = (await docker.info().catch(() => null)) as { CgroupVersion?: string; CgroupDriver?: string; OperatingSystem?: string } | null;
  const mem = meminfo();
  let osName = os.type();
  try {
    osName = /PRETTY_NAME="([^"]+)"/.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    // keep os.type()
  }
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memTotalBytes: mem.MemTotal,
    memAvailableBytes: mem.MemAvailable,
    kernel: os.release(),
    os: osName,
    docker: v ? `${v.Version} (API ${v.ApiVersion})` : 'unknown',
    cgroup: info ? `v${info.CgroupVersion ?? '?'} (${info.CgroupDriver ?? '?'})` : 'unknown',
    node: process.version,
    loadAvg: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
}

export interface ContainerMemory {
  /** What `docker stats` shows: usage minus inactive file pages. */
  workingSetBytes: number;
  /** Anonymous memory of the container's processes (no page cache): the part that is its alone. */
  rssBytes: number;
  /** Page cache charged to it (shared image files are charged to whichever container read them first). */
  cacheBytes: number;
  /** RSS of each process in the container, by command. */
  processes: { cmd: string; rssBytes: number; anonBytes: number }[];
}

function cgroupDir(id: string): { v: 1 | 2; dir: string } | null {
  const candidates: [1 | 2, string][] = [
    [1, `/sys/fs/cgroup/memory/docker/${id}`],
    [1, `/sys/fs/cgroup/memory/system.slice/docker-${id}.scope`],
    [2, `/sys/fs/cgroup/system.slice/docker-${id}.scope`],
    [2, `/sys/fs/cgroup/docker/${id}`],
  ];
  for (const [v, dir] of candidates) if (existsSync(dir)) return { v, dir };
  return null;
}

const statFile = (path: string) =>
  Object.fromEntries(
    readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' '))
      .map(([k, n]) => [k, Number(n)]),
  ) as Record<string, number>;

function procStatus(pid: number): { rss: number; anon: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon') };
}

function procCmd(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 80);
  } catch {
    return '?';
  }
}

/** Memory of one container from its cgroup (v1 or v2), falling back to the engine's stats. */
export async function containerMemory(id: string): Promise<ContainerMemory> {
  const cg = cgroupDir(id);
  if (!cg) {
    const s = (await docker.getContainer(id).stats({ stream: false })) as any;
    const usage = s.memory_stats?.usage ?? 0;
    const st = s.memory_stats?.stats ?? {};
    return {
      workingSetBytes: usage - (st.total_inactive_file ?? st.inactive_file ?? 0),
      rssBytes: st.total_rss ?? st.anon ?? NaN,
      cacheBytes: st.total_cache ?? st.file ?? NaN,
      processes: [],
    };
  }
  let pids: number[] = [];
  try {
    pids = readFileSync(`${cg.dir}/cgroup.procs`, 'utf8').trim().split('\n').filter(Boolean).map(Number);
  } catch {
    pids = [];
  }
  const processes = pids.flatMap((pid) => {
    try {
      const s = procStatus(pid);
      return [{ cmd: procCmd(pid), rssBytes: s.rss, anonBytes: s.anon }];
    } catch {
      return [];
    }
  });
  if (cg.v === 1) {
    const usage = Number(readFileSync(`${cg.dir}/memory.usage_in_bytes`, 'utf8'));
    const st = statFile(`${cg.dir}/memory.stat`);
    return { workingSetBytes: usage - (st.total_inactive_file ?? 0), rssBytes: st.total_rss ?? NaN, cacheBytes: st.total_cache ?? NaN, processes };
  }
  const usage = Number(readFileSync(`${cg.dir}/memory.current`, 'utf8'));
  const st = statFile(`${cg.dir}/memory.stat`);
  return { workingSetBytes: usage - (st.inactive_file ?? 0), rssBytes: st.anon ?? NaN, cacheBytes: st.file ?? NaN, processes };
}

/** RSS of the engine's per-container shim (containerd-shim-runc-v2 -id <id>), a host cost every container pays. */
export function shimRss(id: string): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes('containerd-shim') && cmd.includes(id)) return procStatus(Number(entry)).rss;
    } catch {
      // gone while reading
    }
  }
  return NaN;
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** CPU time (ms) a process has used so far: utime + stime from /proc/<pid>/stat; 0 when it is gone. */
export function processCpuMs(pid: number): number {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** Busy CPU time (ms) of the whole machine so far, from /proc/stat. */
export function machineBusyMs(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + (steal ?? 0)) * TICK_MS;
}

/** Pids whose command line matches, e.g. `redis-server` or `dockerd`. */
export function pidsMatching(test: (cmdline: string, comm: string) => boolean): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      if (test(cmd, comm)) out.push(Number(entry));
    } catch {
      // gone while reading
    }
  }
  return out;
}

/** Pids inside a container, from its memory cgroup. */
export function containerPids(id: string): number[] {
  const cg = cgroupDir(id);
  if (!cg) return [];
  try {
    return readFileSync(`${cg.dir}/cgroup.procs`, 'utf8').trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Snapshot of CPU used by named groups of processes; `diff` of two snapshots gives ms per group. */
export function cpuSnapshot(groups: Record<string, number[]>): Record<string, number> {
  const out: Record<string, number> = { machine: machineBusyMs() };
  for (const [name, pids] of Object.entries(groups)) out[name] = pids.reduce((a, p) => a + processCpuMs(p), 0);
  return out;
}
