import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import IORedis from 'ioredis';
import { REDIS_URL, namespaceContainers, pngSize, startSystem, waitFor, stopExpectingNoLeak, type TestSystem } from './helpers/system';

const MiB = 1024 * 1024;
const ARCHIVE_SECONDS = 14;
let sys: TestSystem;
let archiveDir: string;
let sid: string;

beforeAll(async () => {
  archiveDir = mkdtempSync(join(tmpdir(), 'sessionbox-archives-'));
  sys = await startSystem({
    SESSIONBOX_ARCHIVE_DIR: archiveDir,
    SESSIONBOX_ARCHIVE_SECONDS: String(ARCHIVE_SECONDS),
    SESSIONBOX_MAX_FILE_BYTES: String(10 * MiB),
    SESSIONBOX_MAX_SESSION_FILES_BYTES: String(16 * MiB),
  });
  sid = (await sys.http.createSession()).id;
});
afterAll(async () => {
  try {
    if (sid) expect((await sys.http.delete(`/v1/sessions/${sid}`)).status).toBe(204);
    if (sys) await stopExpectingNoLeak(sys);
  } finally {
    rmSync(archiveDir, { recursive: true, force: true });
  }
});

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const files = (id: string) => `/v1/sessions/${id}/files`;

/** A request whose path goes out exactly as written (fetch would resolve `..` and `//` first). */
function rawRequest(method: string, path: string, body?: Buffer): Promise<{ status: number; body: any }> {
  const url = new URL(sys.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path, headers: body ? { 'content-length': body.length } : {} }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        resolve({ status: res.statusCode ?? 0, body: text && /json/.test(res.headers['content-type'] ?? '') ? JSON.parse(text) : text });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

function multipart(parts: { name: string; filename?: string; data: Buffer | string; type?: string }[]) {
  const form = new FormData();
  for (const p of parts) {
    if (p.filename !== undefined) form.append(p.name, new Blob([p.data], { type: p.type ?? 'application/octet-stream' }), p.filename);
    else form.append(p.name, String(p.data));
  }
  return fetch(sys.url + files(sid), { method: 'POST', body: form }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
}

const SALES_CSV = 'date,region,amount\n2024-01-01,north,10\n2024-01-02,south,\n2024-01-03,north,30\n2024-01-04,east,25\n';

describe('files in and out of a session', () => {
  test('upload (PUT raw) -> read in code -> write results -> download byte-identical; Execution.files lists new files only', async () => {
    const put = await sys.http.put(`${files(sid)}/data/sales.csv`, SALES_CSV, { 'content-type': 'text/csv' });
    expect(put.status).toBe(201);
    expect(put.body).toMatchObject({ path: 'data/sales.csv', size: Buffer.byteLength(SALES_CSV), mimeType: 'text/csv; charset=utf-8' });
    expect(put.body.url).toBe(`${sys.url}${files(sid)}/data/sales.csv`);

    const code = [
      'import pandas as pd, matplotlib.pyplot as plt, hashlib, os',
      "df = pd.read_csv('data/sales.csv').dropna()",
      "os.makedirs('out', exist_ok=True)",
      "df.to_csv('out/clean.csv', index=False)",
      "df.groupby('region')['amount'].sum().plot.bar()",
      "plt.savefig('out/chart.png')",
      "plt.show()",
      "print(hashlib.sha256(open('out/clean.csv','rb').read()).hexdigest())",
      "len(df)",
    ].join('\n');
    const ex = await sys.http.run(sid, code);
    expect(ex.status).toBe('succeeded');
    expect(ex.result).toBe('3');
    // the uploaded CSV was only read: not in files; the figure shown stays in figures
    expect(ex.files.map((f: any) => f.path).sort()).toEqual(['out/chart.png', 'out/clean.csv']);
    expect(ex.figures).toHaveLength(1);
    const png = ex.files.find((f: any) => f.path === 'out/chart.png');
    expect(png).toMatchObject({ mimeType: 'image/png', url: `${sys.url}${files(sid)}/out/chart.png` });

    const clean = await fetch(ex.files.find((f: any) => f.path === 'out/clean.csv').url);
    expect(clean.status).toBe(200);
    expect(clean.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(clean.headers.get('content-disposition')).toMatch(/^attachment; filename="clean.csv"/);
    expect(clean.headers.get('x-content-type-options')).toBe('nosniff');
    const cleanBytes = Buffer.from(await clean.arrayBuffer());
    expect(sha(cleanBytes)).toBe(ex.stdout.trim());
    expect(cleanBytes.toString()).toBe('date,region,amount\n2024-01-01,north,10.0\n2024-01-03,north,30.0\n2024-01-04,east,25.0\n');

    const img = await sys.http.get(`${files(sid)}/out/chart.png`);
    expect(img.headers.get('content-type')).toBe('image/png');
    expect(img.raw.length).toBe(png.size);
    expect(pngSize(img.raw)).toEqual({ width: 640, height: 480 });

    const list = await sys.http.get(files(sid));
    expect(list.status).toBe(200);
    expect(list.body.truncated).toBe(false);
    expect(list.body.files.map((f: any) => f.path)).toEqual(['data/sales.csv', 'out/chart.png', 'out/clean.csv']);
    expect(list.body.files[0]).toMatchObject({ size: Buffer.byteLength(SALES_CSV), mimeType: 'text/csv; charset=utf-8' });
    expect(Date.parse(list.body.files[0].modifiedAt)).toBeGreaterThan(Date.now() - 120_000);
  });

  test('binary files of several MiB go both ways byte-identical; a JSON upload is stored as sent', async () => {
    const blob = randomBytes(3 * MiB + 17);
    const put = await sys.http.put(`${files(sid)}/bin/blob.bin`, blob, { 'content-type': 'application/octet-stream' });
    expect(put.status).toBe(201);
    expect(put.body.size).toBe(blob.length);
    const ex = await sys.http.run(sid, "import hashlib; hashlib.sha256(open('bin/blob.bin','rb').read()).hexdigest()");
    expect(ex.result).toBe(`'${sha(blob)}'`);
    const got = await sys.http.get(`${files(sid)}/bin/blob.bin`);
    expect(got.headers.get('content-type')).toBe('application/octet-stream');
    expect(sha(got.raw)).toBe(sha(blob));

    const json = '{ "a" : [1, 2],\n  "b": null }\n';
    expect((await sys.http.put(`${files(sid)}/cfg.json`, json, { 'content-type': 'application/json' })).status).toBe(201);
    expect((await sys.http.get(`${files(sid)}/cfg.json`)).raw.toString()).toBe(json);
    expect((await sys.http.put(`${files(sid)}/empty.txt`, '')).body.size).toBe(0);
    expect((await sys.http.get(`${files(sid)}/empty.txt`)).raw.length).toBe(0);
  });

  test('pandas reads an uploaded CSV and an uploaded Excel file', async () => {
    const mk = await sys.http.run(sid, "import pandas as pd\npd.DataFrame({'x': [1, 2, 3], 'y': ['a', 'b', 'c']}).to_excel('gen.xlsx', index=False)");
    expect(mk.status).toBe('succeeded');
    const xlsx = (await sys.http.get(`${files(sid)}/gen.xlsx`)).raw;
    expect(xlsx.subarray(0, 2).toString()).toBe('PK');
    const up = await multipart([
      { name: 'files', filename: 'in/book.xlsx', data: xlsx },
      { name: 'files', filename: 'in/more.csv', data: 'k,v\nfoo,1\nbar,2\n' },
    ]);
    expect(up.status).toBe(201);
    const r = await sys.http.run(
      sid,
      "import pandas as pd\n(int(pd.read_excel('in/book.xlsx')['x'].sum()), int(pd.read_csv('in/more.csv')['v'].sum()), list(pd.read_excel('in/book.xlsx')['y']))",
    );
    expect(r.result).toBe("(6, 3, ['a', 'b', 'c'])");
  });

  test('multipart: several files at their filenames or at explicit path fields; delete removes', async () => {
    const a = await multipart([
      { name: 'files', filename: 'm/one.txt', data: 'one' },
      { name: 'files', filename: 'two.txt', data: 'two!' },
      { name: 'files', filename: 'ユニコード.txt', data: 'utf8' },
    ]);
    expect(a.status).toBe(201);
    expect(a.body.files.map((f: any) => [f.path, f.size])).toEqual([['m/one.txt', 3], ['two.txt', 4], ['ユニコード.txt', 4]]);
    const b = await multipart([
      { name: 'path', data: 'p/first.txt' },
      { name: 'path', data: 'p/second.txt' },
      { name: 'files', filename: 'ignored1', data: '1' },
      { name: 'files', filename: 'ignored2', data: '22' },
    ]);
    expect(b.status).toBe(201);
    expect(b.body.files.map((f: any) => f.path)).toEqual(['p/first.txt', 'p/second.txt']);
    const r = await sys.http.run(sid, "[open(p).read() for p in ['m/one.txt','two.txt','ユニコード.txt','p/first.txt','p/second.txt']]");
    expect(r.result).toBe("['one', 'two!', 'utf8', '1', '22']");
    const enc = await sys.http.get(`${files(sid)}/${encodeURIComponent('ユニコード.txt')}`);
    expect(enc.raw.toString()).toBe('utf8');
    expect(enc.headers.get('content-disposition')).toContain("filename*=UTF-8''%E3%83%A6");

    expect((await sys.http.delete(`${files(sid)}/two.txt`)).status).toBe(204);
    const gone = await sys.http.get(`${files(sid)}/two.txt`);
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe('file_not_found');
    expect((await sys.http.delete(`${files(sid)}/p`)).status).toBe(204); // a directory goes with its files
    const names = (await sys.http.get(files(sid))).body.files.map((f: any) => f.path);
    expect(names).not.toContain('two.txt');
    expect(names.filter((n: string) => n.startsWith('p/'))).toEqual([]);

    const wrongField = await (async () => {
      const form = new FormData();
      form.append('upload', new Blob(['x']), 'x.txt');
      const res = await fetch(sys.url + files(sid), { method: 'POST', body: form });
      return { status: res.status, body: (await res.json()) as any };
    })();
    expect(wrongField.status).toBe(400);
    expect((await sys.http.post(files(sid), { a: 1 })).status).toBe(415);
  });

  test('every path-escape form is a 400 invalid_path, on every method, and nothing is written', async () => {
    const before = (await sys.http.get(files(sid))).body.files;
    const bad = [
      '../../etc/passwd',
      '%2e%2e/%2e%2e/etc/passwd',
      '..%2F..%2Fetc%2Fpasswd',
      'a/../../../etc/passwd',
      '/etc/passwd', // -> files//etc/passwd
      '%2Fetc%2Fpasswd',
      'a%00b',
      '..%5C..%5Cetc%5Cpasswd',
      'a//b',
      './a',
      'x%',
    ];
    for (const p of bad) {
      for (const method of ['GET', 'PUT', 'DELETE']) {
        const r = await rawRequest(method, `${files(sid)}/${p}`, method === 'PUT' ? Buffer.from('pwned') : undefined);
        expect([p, method, r.status, r.body?.error?.code]).toEqual([p, method, 400, 'invalid_path']);
      }
    }
    for (const filename of ['../evil.txt', '/abs.txt', 'a/../../evil.txt', 'back\\slash.txt']) {
      const r = await multipart([{ name: 'files', filename, data: 'pwned' }]);
      expect([filename, r.status, r.body.error.code]).toEqual([filename, 400, 'invalid_path']);
    }
    // a valid path first and a bad one second: the whole request is refused before writing
    const mixed = await multipart([
      { name: 'files', filename: 'ok-but-refused.txt', data: 'x' },
      { name: 'files', filename: '../evil.txt', data: 'x' },
    ]);
    expect(mixed.status).toBe(400);
    expect((await sys.http.get(files(sid))).body.files).toEqual(before);
  });

  test('symlinks planted by the code are never followed: not listed, not read, not written through', async () => {
    const plant = await sys.http.run(
      sid,
      "import os\nos.symlink('/etc/passwd', 'passwd-link')\nos.symlink('/etc', 'etc-link')\nos.makedirs('d', exist_ok=True)\nos.symlink('/etc/passwd', 'd/inner')\nsorted(os.listdir('.'))[:3]",
    );
    expect(plant.status).toBe('succeeded');
    for (const p of ['passwd-link', 'etc-link/passwd', 'd/inner']) {
      const r = await sys.http.get(`${files(sid)}/${p}`);
      expect([p, r.status, r.body.error.code]).toEqual([p, 400, 'invalid_path']);
      expect(r.raw.toString()).not.toContain('root:');
    }
    const w = await sys.http.put(`${files(sid)}/etc-link/evil`, 'x');
    expect([w.status, w.body.error.code]).toEqual([400, 'invalid_path']);
    const w2 = await sys.http.put(`${files(sid)}/passwd-link`, 'x');
    expect([w2.status, w2.body.error.code]).toEqual([400, 'invalid_path']);
    const names = (await sys.http.get(files(sid))).body.files.map((f: any) => f.path);
    expect(names).not.toEqual(expect.arrayContaining(['passwd-link']));
    expect(names.some((n: string) => n.includes('link') || n === 'd/inner')).toBe(false);
    const stillThere = await sys.http.run(sid, "open('/etc/passwd').read().startswith('root:') and os.path.islink('passwd-link')");
    expect(stillThere.result).toBe('True');
  });

  test('caps: over the per-file cap and over the per-session cap are 413, and nothing is written', async () => {
    const big = await sys.http.put(`${files(sid)}/big.bin`, randomBytes(10 * MiB + 1));
    expect([big.status, big.body.error.code]).toEqual([413, 'file_too_large']);
    const bigPart = await multipart([{ name: 'files', filename: 'big.bin', data: randomBytes(10 * MiB + 1) }]);
    expect([bigPart.status, bigPart.body.error.code]).toEqual([413, 'file_too_large']);
    // ~3 MiB already there; 2 x 7 MiB is under the per-file cap but over the 16 MiB session cap
    const used = (await sys.http.get(files(sid))).body.files.reduce((a: number, f: any) => a + f.size, 0);
    expect(used).toBeGreaterThan(3 * MiB);
    const many = await multipart([
      { name: 'files', filename: 'c1.bin', data: randomBytes(7 * MiB) },
      { name: 'files', filename: 'c2.bin', data: randomBytes(7 * MiB) },
    ]);
    expect([many.status, many.body.error.code]).toEqual([413, 'session_files_too_large']);
    const names = (await sys.http.get(files(sid))).body.files.map((f: any) => f.path);
    expect(names).not.toEqual(expect.arrayContaining(['big.bin']));
    expect(names.filter((n: string) => /^c\d\.bin$/.test(n))).toEqual([]);
    // replacing a file counts its new size, not both
    expect((await sys.http.put(`${files(sid)}/bin/blob.bin`, randomBytes(9 * MiB))).status).toBe(201);
  });

  test('an upload is answered while code runs (file ops are not queued behind executions)', async () => {
    const queued = await sys.http.post(`/v1/sessions/${sid}/executions`, { code: 'import time\ntime.sleep(4)\nopen("during.txt").read()' });
    expect(queued.status).toBe(202);
    await waitFor(async () => (await sys.http.get(`/v1/sessions/${sid}/executions/${queued.body.id}`)).body.status === 'running', 20_000, 50);
    expect((await sys.http.put(`${files(sid)}/during.txt`, 'uploaded mid-run')).status).toBe(201);
    expect((await sys.http.get(`/v1/sessions/${sid}/executions/${queued.body.id}`)).body.status).toBe('running');
    const done = await waitFor(async () => {
      const e = (await sys.http.get(`/v1/sessions/${sid}/executions/${queued.body.id}`)).body;
      return e.status !== 'running' && e.status !== 'queued' ? e : null;
    }, 30_000);
    expect(done.result).toBe("'uploaded mid-run'");
  });

  test('executions with > 64 KiB of code sent while a multi-MiB upload streams in: all succeed, the file is byte-identical', async () => {
    // File operations run as their own `docker exec`, never on the stream the worker writes
    // executions to (two writers there could interleave pieces of their lines), and the
    // supervisor's sweep at the end of a run leaves them alone.
    const s = await sys.http.createSession();
    // ~900 KiB: the engine copies such a line in many pieces (the old attach-stream upload failed here)
    const literal = randomBytes(450 * 1024).toString('hex');
    const code = `s = "${literal}"\nimport hashlib\n(len(s), hashlib.sha256(s.encode()).hexdigest())`;
    expect(Buffer.byteLength(code)).toBeGreaterThan(64 * 1024);
    let overlapped = 0;
    // Rounds until some execution has ended while an upload was still in flight (usually the first).
    for (let round = 0; round < 6 && !overlapped; round++) {
      const blob = randomBytes(9 * MiB);
      let uploaded = false;
      const execute = () => sys.http.post(`/v1/sessions/${s.id}/executions?wait=true`, { code });
      const first = execute(); // a head start, so that it usually ends before the upload does
      const upload = sys.http.put(`${files(s.id)}/big/upload.bin`, blob).finally(() => (uploaded = true));
      const runs: { body: any; midUpload: boolean }[] = [];
      for (let next = first; ; next = execute()) {
        runs.push({ body: (await next).body, midUpload: !uploaded });
        if (uploaded || runs.length >= 20) break;
      }
      const put = await upload;
      expect([put.status, put.body.size]).toEqual([201, blob.length]);
      for (const r of runs) expect([r.body.status, r.body.result]).toEqual(['succeeded', `(${literal.length}, '${sha(literal)}')`]);
      expect(sha((await sys.http.get(`${files(s.id)}/big/upload.bin`)).raw)).toBe(sha(blob));
      const inside = await sys.http.run(s.id, "import hashlib; hashlib.sha256(open('big/upload.bin','rb').read()).hexdigest()");
      expect(inside.result).toBe(`'${sha(blob)}'`);
      overlapped += runs.filter((r) => r.midUpload).length;
    }
    expect(overlapped).toBeGreaterThan(0);
    await sys.http.delete(`/v1/sessions/${s.id}`);
  });

  test('unknown session -> 404; expired/deleted session file routes -> 410', async () => {
    const missing = await sys.http.get(files('00000000-0000-4000-8000-000000000000'));
    expect([missing.status, missing.body.error.code]).toEqual([404, 'session_not_found']);
    const s = await sys.http.createSession();
    expect((await sys.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    const r = await sys.http.put(`${files(s.id)}/a.txt`, 'x');
    expect([r.status, r.body.error.code, r.body.error.reason, r.body.error.restorable]).toEqual([410, 'session_terminated', 'deleted', false]);
  });
});

describe('restore after expiry or delete', () => {
  test('DELETE ?keep=files archives; restoreFrom brings the files (not the memory) back; another owner gets 404', async () => {
    const s = await sys.http.createSession({ metadata: { user: 'u1' }, limits: { diskMb: 256 } });
    const big = randomBytes(9 * MiB); // incompressible: the archive goes back in two pieces
    expect((await sys.http.put(`${files(s.id)}/big.bin`, big)).status).toBe(201);
    await sys.http.run(s.id, "x = 41\nimport os\nos.makedirs('out', exist_ok=True)\nopen('out/note.txt','w').write('kept')");
    const del = await sys.http.delete(`/v1/sessions/${s.id}?keep=files`);
    expect(del.status).toBe(200);
    expect(del.body).toMatchObject({ id: s.id, restorable: true, files: 2 });
    expect(del.body.archiveBytes).toBeGreaterThan(9 * MiB);
    const gone = await sys.http.get(`/v1/sessions/${s.id}`);
    expect(gone.status).toBe(410);
    expect(gone.body.error).toMatchObject({ code: 'session_terminated', reason: 'deleted', restorable: true, restoreUntil: del.body.restoreUntil });

    await expect(sys.api.ctx.files.restore({ restoreFrom: s.id }, { owner: 'someone-else' })).rejects.toMatchObject({ status: 404, code: 'archive_not_found' });

    const r = await sys.http.post('/v1/sessions', { restoreFrom: s.id });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ status: 'ready', restoredFrom: s.id, memoryRestored: false, metadata: { user: 'u1' }, limits: { diskMb: 256 } });
    expect(r.body.id).not.toBe(s.id);
    expect(r.body.notes[0]).toMatch(/2 file\(s\) restored .*not restored/);
    const listed = (await sys.http.get(files(r.body.id))).body.files.map((f: any) => [f.path, f.size]);
    expect(listed).toEqual([['big.bin', big.length], ['out/note.txt', 4]]);
    expect(sha((await sys.http.get(`${files(r.body.id)}/big.bin`)).raw)).toBe(sha(big));
    const ex = await sys.http.run(r.body.id, "open('out/note.txt').read() + ' ' + str('x' in globals())");
    expect(ex.result).toBe("'kept False'");
    expect((await sys.http.get(`/v1/sessions/${r.body.id}`)).body.restoredFrom).toBe(s.id);
    await sys.http.delete(`/v1/sessions/${r.body.id}`);
  });

  test('restoreFrom errors: unknown id 404, live session 409, deleted without keep 410, bad id 400', async () => {
    const unknown = await sys.http.post('/v1/sessions', { restoreFrom: '00000000-0000-4000-8000-000000000000' });
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'archive_not_found']);
    const live = await sys.http.post('/v1/sessions', { restoreFrom: sid });
    expect([live.status, live.body.error.code]).toEqual([409, 'session_not_terminated']);
    const s = await sys.http.createSession();
    await sys.http.delete(`/v1/sessions/${s.id}`);
    const noKeep = await sys.http.post('/v1/sessions', { restoreFrom: s.id });
    expect([noKeep.status, noKeep.body.error.code]).toEqual([410, 'archive_unavailable']);
    expect((await sys.http.post('/v1/sessions', { restoreFrom: 'nope' })).status).toBe(400);
  });

  test('an expired session is archived (symlinks left out), its 410 says until when, restore works, and the archive is gone after its time', async () => {
    const s = await sys.http.createSession({ ttlSeconds: 10 });
    expect((await sys.http.put(`${files(s.id)}/data/sales.csv`, SALES_CSV)).status).toBe(201);
    await sys.http.run(s.id, "import os\nos.symlink('/etc/passwd', 'passwd-link')\nos.symlink('/etc', 'etc-link')\nopen('result.txt','w').write('42')\nv = 1");
    // polled through the list: a GET of the session itself would count as activity and keep it alive
    await waitFor(async () => (await sys.http.get('/v1/sessions')).body.sessions.find((x: any) => x.id === s.id)?.status === 'terminated', 30_000, 250);
    const gone = await sys.http.get(`/v1/sessions/${s.id}`);
    expect(gone.status).toBe(410);
    expect(gone.body.error).toMatchObject({ code: 'session_expired', reason: 'expired', restorable: true });
    const until = Date.parse(gone.body.error.restoreUntil);
    expect(until).toBeGreaterThan(Date.now());
    expect(until).toBeLessThanOrEqual(Date.now() + ARCHIVE_SECONDS * 1000);
    expect(gone.body.error.hint).toContain('restoreFrom');
    const dir = join(archiveDir, sys.config.namespace);
    expect(readdirSync(dir).filter((n) => n.startsWith(s.id))).toHaveLength(1);

    const r = await sys.http.post('/v1/sessions', { restoreFrom: s.id });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ restoredFrom: s.id, memoryRestored: false, ttlSeconds: 10 });
    const check = await sys.http.run(
      r.body.id,
      "import os, pandas as pd\n(int(pd.read_csv('data/sales.csv')['amount'].sum()), open('result.txt').read(), sorted(os.listdir('.')), 'v' in globals())",
    );
    expect(check.result).toBe("(65, '42', ['data', 'result.txt'], False)");
    await sys.http.delete(`/v1/sessions/${r.body.id}`);

    // after the archive time the sweep leaves nothing on the host, and Redis forgets it
    await waitFor(async () => readdirSync(dir).filter((n) => n.startsWith(s.id)).length === 0, (ARCHIVE_SECONDS + 10) * 1000, 250);
    const redis = new IORedis(REDIS_URL);
    try {
      expect(await redis.exists(`sb:${sys.config.namespace}:archive:${s.id}`)).toBe(0);
    } finally {
      await redis.quit();
    }
    const later = await sys.http.get(`/v1/sessions/${s.id}`);
    expect(later.body.error).toMatchObject({ code: 'session_expired', restorable: false });
    const tooLate = await sys.http.post('/v1/sessions', { restoreFrom: s.id });
    expect([tooLate.status, tooLate.body.error.code]).toEqual([410, 'archive_unavailable']);
  });
});
