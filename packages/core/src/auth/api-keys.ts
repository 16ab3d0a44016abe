import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Caller } from './caller';
import { splitList } from '../infra/comma-list';
import { errMsg } from '../infra/err-msg';

/** One tenant: the name owns every session made with the key; limits override the defaults. */
export interface ApiKey {
  name: string;
  key: string;
  /** null: the `SESSIONBOX_KEY_MAX_SESSIONS` default. */
  maxSessions: number | null;
  /** null: the `SESSIONBOX_KEY_EXECUTIONS_PER_MINUTE` default. */
  executionsPerMinute: number | null;
  /** Set only in `SESSIONBOX_API_KEYS_FILE`; unset: the `SESSIONBOX_KEY_*` (or `SESSIONBOX_ARCHIVE_SECONDS`) default. */
  maxFigureBytes?: number;
  maxArchives?: number;
  maxArchiveBytes?: number;
  archiveSeconds?: number;
  maxConnections?: number;
}

const KeyName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a key name is 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit)');
const KeySecret = z
  .string()
  .min(16, 'an API key must be at least 16 characters (e.g. `openssl rand -hex 24`)')
  .max(512)
  .regex(/^[\x21-\x7e]+$/, 'an API key is printable ASCII without spaces');
const Limit = z.number().int().min(0).nullable().default(null);

const Budget = z.number().int().min(0).optional();
const ApiKeyEntry = z
  .object({
    name: KeyName,
    key: KeySecret,
    maxSessions: Limit,
    executionsPerMinute: Limit,
    maxFigureBytes: Budget,
    maxArchives: Budget,
    maxArchiveBytes: Budget,
    archiveSeconds: z.number().int().min(1).optional(),
    maxConnections: Budget,
  })
  .strict();

/**
 * `SESSIONBOX_API_KEYS_FILE`: `[{ "name", "key", "maxSessions"?, "executionsPerMinute"?, "maxFigureBytes"?,
 * "maxArchives"?, "maxArchiveBytes"?, "archiveSeconds"?, "maxConnections"? }]` or `{ "name": "key" }`.
 */
const KeysFile = z.union([
  z.array(ApiKeyEntry),
  z.record(KeyName, KeySecret).transform((m) => Object.entries(m).map(([name, key]) => ({ name, key, maxSessions: null, executionsPerMinute: null }))),
]);

const optionalLimit = (s: string | undefined, what: string): number | null => {
  if (s === undefined || s === '') return null;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${what} "${s}" is not a whole number`);
  return n;
};

/** `name:key[:maxSessions[:executionsPerMinute]]`, comma-separated; an empty limit keeps the default. */
export function parseApiKeyList(raw: string): ApiKey[] {
  return splitList(raw).map((entry) => {
    const [name, key, maxSessions, perMinute, ...rest] = entry.split(':');
    const label = `SESSIONBOX_API_KEYS entry "${name ?? ''}:…"`;
    if (key === undefined || rest.length) throw new Error(`${label} is not name:key[:maxSessions[:executionsPerMinute]]`);
    const parsed = ApiKeyEntry.safeParse({
      name,
      key,
      maxSessions: optionalLimit(maxSessions, `${label} maxSessions`),
      executionsPerMinute: optionalLimit(perMinute, `${label} executionsPerMinute`),
    });
    if (!parsed.success) throw new Error(`${label}: ${parsed.error.issues[0].message}`);
    return parsed.data;
  });
}

export function readApiKeyFile(path: string): ApiKey[] {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`SESSIONBOX_API_KEYS_FILE ${path}: ${errMsg(err)}`);
  }
  const parsed = KeysFile.safeParse(data);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new Error(`SESSIONBOX_API_KEYS_FILE ${path}: ${i.path.join('.') || 'file'}: ${i.message}`);
  }
  return parsed.data;
}

/** Both sources together; a name or key used twice, or the admin key reused, is a configuration error. */
export function loadApiKeys(p: { list?: string; file?: string; adminKey?: string }): { keys: ApiKey[]; adminKey: string | null } {
  const keys = [...(p.list ? parseApiKeyList(p.list) : []), ...(p.file ? readApiKeyFile(p.file) : [])];
  const adminKey = p.adminKey ? p.adminKey : null;
  if (adminKey !== null) {
    const r = KeySecret.safeParse(adminKey);
    if (!r.success) throw new Error(`SESSIONBOX_ADMIN_KEY: ${r.error.issues[0].message}`);
  }
  const names = new Set<string>();
  const secrets = new Set<string>(adminKey ? [adminKey] : []);
  for (const k of keys) {
    if (names.has(k.name)) throw new Error(`API key name "${k.name}" is configured twice`);
    if (secrets.has(k.key)) throw new Error(`API key "${k.name}" reuses another key's secret (or the admin key)`);
    names.add(k.name);
    secrets.add(k.key);
  }
  return { keys, adminKey };
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * Looks a presented secret up among the configured keys. Every key is compared, each in constant
 * time over SHA-256 digests (equal lengths), so neither the position nor a matching prefix shows in timing.
 */
export class ApiKeyring {
  private readonly entries: { digest: Buffer; caller: Caller }[];

  constructor(keys: ApiKey[], adminKey: string | null) {
    this.entries = keys.map((k) => ({ digest: digest(k.key), caller: { owner: k.name } }));
    if (adminKey) this.entries.push({ digest: digest(adminKey), caller: { owner: '*' } });
  }

  /** No key configured: the API runs open (and binds to localhost unless told otherwise). */
  get open(): boolean {
    return this.entries.length === 0;
  }

  lookup(secret: string): Caller | null {
    const d = digest(secret);
    let found: Caller | null = null;
    for (const e of this.entries) if (timingSafeEqual(d, e.digest)) found = e.caller;
    return found;
  }
}
