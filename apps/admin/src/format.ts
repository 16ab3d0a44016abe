import Table from 'cli-table3';
import { InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { splitList, type Limits } from '@sessionbox/core';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const Duration = z.string().regex(/^\d+(\.\d+)?(ms|s|m|h|d)?$/, 'a duration like 500ms, 10s, 30m, 2h or 1d (a bare number is seconds)');

/** `2h` → 7200000; a bare number is seconds. Used as a commander argument parser. */
export function parseDuration(raw: string): number {
  const r = Duration.safeParse(raw.trim());
  if (!r.success) throw new InvalidArgumentError(r.error.issues[0].message);
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(r.data)!;
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']);
}

export function parsePositiveInt(raw: string): number {
  const r = z.coerce.number().int().min(1).max(1000).safeParse(raw);
  if (!r.success) throw new InvalidArgumentError('a whole number from 1 to 1000');
  return r.data;
}

/** Collects repeated and comma-separated values: `--status ready,busy --status dead`. */
export function collectList(allowed: readonly string[] | null) {
  return (raw: string, prev: string[] = []): string[] => {
    const items = splitList(raw);
    for (const i of items) {
      if (allowed && !allowed.includes(i)) throw new InvalidArgumentError(`"${i}" is not one of ${allowed.join(', ')}`);
    }
    return [...prev, ...items];
  };
}

/** `--meta team=red` (repeatable) → `{ team: 'red' }`. */
export function collectMeta(raw: string, prev: Record<string, string> = {}): Record<string, string> {
  const m = /^([^=]+)=(.*)$/.exec(raw);
  if (!m) throw new InvalidArgumentError('expected key=value');
  return { ...prev, [m[1]]: m[2] };
}

/** 95 → "1m35s", compact like `docker ps`. */
export function fmtDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

export function fmtExpiresIn(ms: number): string {
  return ms >= 0 ? fmtDuration(ms) : `overdue ${fmtDuration(-ms)}`;
}

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function fmtLimits(l: Limits | null | undefined): string {
  if (!l) return '-';
  return `${l.memoryMb}M mem, ${l.cpus} cpu, ${l.pids} pids, ${l.diskMb}M disk`;
}

export function fmtMeta(m: Record<string, string> | null | undefined): string {
  const e = Object.entries(m ?? {});
  return e.length ? e.map(([k, v]) => `${k}=${v}`).join(',') : '-';
}

export function iso(ms: number | null | undefined): string {
  return ms ? new Date(ms).toISOString() : '-';
}

/** A borderless table like `docker ps`: easy to read, to grep and to awk. */
export function plainTable(head: string[]): Table.Table {
  return new Table({
    head,
    chars: {
      top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
      bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
      left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  ',
    },
    style: { 'padding-left': 0, 'padding-right': 0, head: [], border: [], compact: true },
  });
}

/** Renders a table without trailing blanks. */
export function render(t: Table.Table): string {
  return (
    t
      .toString()
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n') + '\n'
  );
}

/** Key/value lines, aligned. */
export function keyValues(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${(k + ':').padEnd(w + 2)}${v}`).join('\n') + '\n';
}
