import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where a file belongs: an npm package, node's internals, or sessionbox's own code. */
function bucketOf(url: string): string {
  if (!url) return '(native / gc / idle)';
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  const own = /\/(packages\/[^/]+|apps\/[^/]+|bench)\/src\/([^/?]+)|\/(bench)\/([^/?]+)/.exec(url);
  if (own) return own[1] ? `${own[1]}/${own[2]}` : `${own[3]}/${own[4]}`;
  return url.split('/').slice(-2).join('/');
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  busyMs: number;
  byBucket: { bucket: string; ms: number; share: number }[];
}

/** Self time per package/file of a `.cpuprofile` (what `node --cpu-prof` writes). */
export function summarizeProfile(file: string, top = 12): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]);
    const dt = (p.timeDeltas[i] ?? 0) / 1000;
    if (!node) continue;
    const fn = node.callFrame.functionName;
    if (fn === '(idle)' || fn === '(program)') {
      idle += dt;
      continue;
    }
    const key = fn === '(garbage collector)' ? '(gc)' : bucketOf(node.callFrame.url);
    self.set(key, (self.get(key) ?? 0) + dt);
  }
  const totalMs = (p.endTime - p.startTime) / 1000;
  const busyMs = [...self.values()].reduce((a, b) => a + b, 0);
  const byBucket = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([bucket, ms]) => ({ bucket, ms: Number(ms.toFixed(1)), share: Number((ms / busyMs).toFixed(3)) }));
  void idle;
  return { file: path.basename(file), totalMs: Number(totalMs.toFixed(0)), busyMs: Number(busyMs.toFixed(0)), byBucket };
}

export function summarizeProfiles(dir: string): ProfileSummary[] {
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return [];
  }
  return files.map((f) => summarizeProfile(path.join(dir, f)));
}
