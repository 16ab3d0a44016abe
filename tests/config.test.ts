import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { loadConfig, splitList } from '@sessionbox/core';
import { ConfigSchema, EnvSchema } from '../packages/core/src/infra/config';

/** Pure logic: the one config schema, its cross-field rules, and the README table it must match. */

const issues = (env: Record<string, string>) => {
  const r = ConfigSchema.safeParse(env);
  if (r.success) throw new Error('expected the configuration to be refused');
  return r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
};

describe('config: one schema', () => {
  test('an empty environment gives the documented defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 8000,
      redisUrl: 'redis://127.0.0.1:6379',
      namespace: 'default',
      dockerHosts: [{ name: 'local', endpoint: 'unix:///var/run/docker.sock', capacity: 300 }],
      workerHost: 'local',
      maxTimeoutMs: 600_000,
      stuckBusyMs: 660_000,
      reconcileGraceMs: 10_000,
      shutdownGraceMs: 30_000,
      maxSessionFilesBytes: null,
      workerMetricsPort: null,
      apiKeys: [],
      adminKey: null,
      keyMaxSessions: null,
      keyExecutionsPerMinute: null,
    });
  });

  test('hosts: a missing capacity comes from SESSIONBOX_HOST_CAPACITY; the worker host defaults to the first', () => {
    const c = loadConfig({ SESSIONBOX_DOCKER_HOSTS: ' h1=tcp://a:2376@5 ,, h2=unix:///x ', SESSIONBOX_HOST_CAPACITY: '7' });
    expect(c.dockerHosts).toEqual([
      { name: 'h1', endpoint: 'tcp://a:2376', capacity: 5 },
      { name: 'h2', endpoint: 'unix:///x', capacity: 7 },
    ]);
    expect(c.workerHost).toBe('h1');
    expect(loadConfig({ SESSIONBOX_DOCKER_HOSTS: 'h1=x,h2=y', SESSIONBOX_WORKER_HOST: 'h2' }).workerHost).toBe('h2');
  });

  test('cross-field: the worker host must be one of the hosts, and there must be a host', () => {
    expect(issues({ SESSIONBOX_DOCKER_HOSTS: 'h1=x', SESSIONBOX_WORKER_HOST: 'h9' })).toEqual([
      { path: 'SESSIONBOX_WORKER_HOST', message: '"h9" is not in SESSIONBOX_DOCKER_HOSTS' },
    ]);
    expect(issues({ SESSIONBOX_DOCKER_HOSTS: ' , ' })).toEqual([{ path: 'SESSIONBOX_DOCKER_HOSTS', message: 'names no host' }]);
  });

  test('a malformed host entry names itself', () => {
    expect(issues({ SESSIONBOX_DOCKER_HOSTS: 'h1=x,nonsense' })).toEqual([
      { path: 'SESSIONBOX_DOCKER_HOSTS.1', message: 'entry "nonsense" is not name=endpoint[@capacity]' },
    ]);
    expect(issues({ SESSIONBOX_DOCKER_HOSTS: 'Upper=x' })[0].path).toBe('SESSIONBOX_DOCKER_HOSTS.0.name');
  });

  test('per-key limits default to 50 and 600 only once a key exists; an explicit value wins', () => {
    const key = `a:${'k'.repeat(16)}`;
    expect(loadConfig({ SESSIONBOX_API_KEYS: key })).toMatchObject({ keyMaxSessions: 50, keyExecutionsPerMinute: 600 });
    expect(loadConfig({ SESSIONBOX_ADMIN_KEY: 'a'.repeat(16) })).toMatchObject({ keyMaxSessions: 50, keyExecutionsPerMinute: 600 });
    expect(loadConfig({ SESSIONBOX_API_KEYS: key, SESSIONBOX_KEY_MAX_SESSIONS: '0', SESSIONBOX_KEY_EXECUTIONS_PER_MINUTE: '' })).toMatchObject({
      keyMaxSessions: 0,
      keyExecutionsPerMinute: 600,
    });
  });

  test('every bad variable is named in one message', () => {
    expect(() => loadConfig({ SESSIONBOX_PORT: 'x', SESSIONBOX_RUNTIME: 'kata' })).toThrow(
      /invalid configuration:\n {2}SESSIONBOX_PORT: .*\n {2}SESSIONBOX_RUNTIME: /,
    );
    expect(() => loadConfig({ SESSIONBOX_API_KEYS: 'a:short' })).toThrow(/invalid configuration:\n {2}SESSIONBOX_API_KEYS entry "a:…": .*at least 16/);
  });

  test('splitList trims and drops empty items', () => {
    expect(splitList(' a, b ,,c ,')).toEqual(['a', 'b', 'c']);
    expect(splitList('')).toEqual([]);
  });
});

describe('config: README table', () => {
  const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Configuration'), readme.indexOf('## Development'));
  /** Rows `| `A` / `B` | `1` / `2` | … |` → [A, '1'], [B, '2']; null where the default is described in words. */
  const rows = section
    .split('\n')
    .filter((l) => l.startsWith('| `SESSIONBOX_'))
    .flatMap((l) => {
      const [, vars, defs] = l.split('|').map((c) => c.trim());
      const names = [...vars.matchAll(/`(SESSIONBOX_[A-Z_]+)`/g)].map((m) => m[1]);
      // Only cells that are nothing but backticked values (a trailing remark in parentheses aside) state a default.
      const cell = defs.replace(/ \(.*\)$/, '');
      const values = /^`[^`]*`( \/ `[^`]*`)*$/.test(cell) ? cell.split(' / ').map((d) => d.slice(1, -1)) : [];
      return names.map((n, i) => [n, values.length === names.length ? values[i] : null] as const);
    });
  const shape = EnvSchema.shape as Record<string, z.ZodType>;

  test('lists every variable of the schema, and nothing else', () => {
    expect(rows.map(([n]) => n).sort()).toEqual(Object.keys(shape).sort());
  });

  test('each default it states is the schema default', () => {
    const stated = rows.filter((r): r is readonly [string, string] => r[1] !== null);
    expect(stated.length).toBeGreaterThan(25);
    for (const [name, value] of stated) {
      const parsed = (shape[name].parse(undefined) as unknown) ?? 'unset';
      const expected = name === 'SESSIONBOX_DOCKER_HOSTS' ? [value] : value;
      const actual = name === 'SESSIONBOX_DOCKER_HOSTS' ? (parsed as { name: string; endpoint: string }[]).map((h) => `${h.name}=${h.endpoint}`) : String(parsed);
      expect({ name, value: actual }).toEqual({ name, value: expected });
    }
  });
});
