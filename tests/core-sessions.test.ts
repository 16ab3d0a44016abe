import { docker, namespaceContainers, sleep, startSystem, useSystem, waitFor } from './helpers/system';

const sys = useSystem();

describe('sessions', () => {
  test('POST /v1/sessions makes one labelled container with engine-enforced limits', async () => {
    const s = await sys.http.createSession({ limits: { memoryMb: 256, cpus: 0.5, pids: 64, diskMb: 128 }, metadata: { user: 'u1' } });
    expect(s).toMatchObject({ status: 'ready', ttlSeconds: 600, limits: { memoryMb: 256, cpus: 0.5, pids: 64, diskMb: 128 }, metadata: { user: 'u1' } });
    expect(new Date(s.expiresAt).getTime() - new Date(s.lastActiveAt).getTime()).toBe(600_000);
    const [c] = await docker.listContainers({ filters: { label: [`sessionbox.session-id=${s.id}`] } });
    expect(c.Labels).toMatchObject({ 'sessionbox.managed': 'true', 'sessionbox.session-id': s.id, 'sessionbox.namespace': sys.config.namespace });
    expect(c.Labels['sessionbox.expires-at']).toBe(new Date(s.expiresAt).toISOString());
    const info = await docker.getContainer(c.Id).inspect();
    const hc = info.HostConfig;
    expect(hc.Memory).toBe((256 + 128 + 128) * 1024 * 1024); // memoryMb + diskMb + the runtime allowance (fair-share)
    expect(hc.MemorySwap).toBe(hc.Memory);
    expect(hc.NanoCpus).toBe(0.5e9);
    expect(hc.PidsLimit).toBe(64);
    expect(hc.NetworkMode).toBe('none');
    expect(hc.ReadonlyRootfs).toBe(true);
    expect(hc.CapDrop).toEqual(['ALL']);
    // no-new-privileges, and our own seccomp profile (Docker's default minus io_uring, bpf, … : issue 15)
    expect(hc.SecurityOpt?.[0]).toBe('no-new-privileges:true');
    expect(hc.SecurityOpt?.[1]).toMatch(/^seccomp=\{/);
    expect(hc.SecurityOpt?.[1]).not.toContain('"io_uring_setup"');
    expect(hc.SecurityOpt).toHaveLength(2);
    expect(hc.Init).toBe(false); // the supervisor is PID 1 itself (see hostConfigFor)
    // a uid of its own per session (issue 15 item 11), never 0 and never the image's 1000
    const [uid, gid] = String(info.Config.User).split(':').map(Number);
    expect(uid).toBeGreaterThanOrEqual(1_000_000);
    expect(gid).toBe(uid);
    expect(Object.keys(hc.Tmpfs ?? {}).sort()).toEqual(['/tmp', '/work']);
    // the engine's view from inside: not root, no capabilities, read-only root
    const r = await sys.http.run(
      s.id,
      [
        'import os',
        "caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1]",
        'try:',
        "    open('/etc/x', 'w'); ro = False",
        'except OSError:',
        '    ro = True',
        '(os.getuid(), caps, ro)',
      ].join('\n'),
    );
    expect(r.result).toBe(`(${uid}, '0000000000000000', True)`);
    expect((await sys.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
  });

  test('GET lists newest first; GET one; metadata filter', async () => {
    const a = await sys.http.createSession({ metadata: { team: 'a' } });
    const b = await sys.http.createSession({ metadata: { team: 'b' } });
    const list = (await sys.http.get('/v1/sessions')).body.sessions.map((s: any) => s.id);
    expect(list.indexOf(b.id)).toBeLessThan(list.indexOf(a.id));
    const filtered = (await sys.http.get('/v1/sessions?metadata.team=a')).body.sessions;
    expect(filtered.map((s: any) => s.id)).toEqual([a.id]);
    const one = await sys.http.get(`/v1/sessions/${a.id}`);
    expect(one.status).toBe(200);
    expect(one.body.id).toBe(a.id);
    for (const x of [a, b]) expect((await sys.http.delete(`/v1/sessions/${x.id}`)).status).toBe(204);
  });

  test('DELETE answers 204 with the container already gone, then 410', async () => {
    const s = await sys.http.createSession();
    const [c] = await docker.listContainers({ filters: { label: [`sessionbox.session-id=${s.id}`] } });
    const del = await sys.http.delete(`/v1/sessions/${s.id}`);
    expect(del.status).toBe(204);
    await expect(docker.getContainer(c.Id).inspect()).rejects.toMatchObject({ statusCode: 404 });
    const after = await sys.http.get(`/v1/sessions/${s.id}`);
    expect(after.status).toBe(410);
    expect(after.body.error.code).toBe('session_terminated');
    const exec = await sys.http.post(`/v1/sessions/${s.id}/executions`, { code: 'print(1)' });
    expect(exec.status).toBe(410);
  });

  test('an idle session dies after its TTL: container removed, 410 session_expired', async () => {
    const s = await sys.http.createSession({ ttlSeconds: 10 });
    await sys.http.run(s.id, 'x = 1');
    const expiresAt = new Date((await sys.http.get(`/v1/sessions/${s.id}`)).body.expiresAt).getTime();
    const gone = await waitFor(async () => {
      const left = await docker.listContainers({ all: true, filters: { label: [`sessionbox.session-id=${s.id}`] } });
      return left.length === 0 ? Date.now() : null;
    }, 30_000, 100);
    expect(gone).toBeGreaterThanOrEqual(expiresAt);
    expect(gone - expiresAt).toBeLessThan(10_000);
    const r = await sys.http.get(`/v1/sessions/${s.id}`);
    expect(r.status).toBe(410);
    expect(r.body.error.code).toBe('session_expired');
    const exec = await sys.http.post(`/v1/sessions/${s.id}/executions`, { code: 'print(1)' });
    expect(exec.status).toBe(410);
    expect(exec.body.error.code).toBe('session_expired');
  });

  test('a session running code is never culled, and each touch moves its expiry', async () => {
    const s = await sys.http.createSession({ ttlSeconds: 10 });
    const r = await sys.http.run(s.id, 'import time; time.sleep(13); print("survived")', 20_000);
    expect(r.status).toBe('succeeded');
    expect(r.stdout).toBe('survived\n');
    const after = await sys.http.get(`/v1/sessions/${s.id}`);
    expect(after.status).toBe(200);
    expect(new Date(after.body.expiresAt).getTime()).toBeGreaterThan(Date.now() + 8_000);
    await sys.http.delete(`/v1/sessions/${s.id}`);
  });
});

describe('bad input', () => {
  test('unknown session → 404 with a code', async () => {
    const r = await sys.http.get('/v1/sessions/6f1c0a8e-9d7b-4c35-8a4e-1f2b3c4d5e6f');
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: { code: 'session_not_found', message: expect.any(String) } });
    expect((await sys.http.get('/v1/sessions/not-a-uuid')).status).toBe(404);
    expect((await sys.http.post('/v1/sessions/6f1c0a8e-9d7b-4c35-8a4e-1f2b3c4d5e6f/executions', { code: '1' })).status).toBe(404);
  });

  test.each([
    [{ ttlSeconds: 5 }, 'ttlSeconds'],
    [{ ttlSeconds: 86401 }, 'ttlSeconds'],
    [{ ttlSeconds: 'x' }, 'ttlSeconds'],
    [{ limits: { memoryMb: 10 } }, 'limits.memoryMb'],
    [{ limits: { cpus: 0 } }, 'limits.cpus'],
    [{ limits: { pids: 100000 } }, 'limits.pids'],
    [{ limits: { diskMb: 1 } }, 'limits.diskMb'],
    [{ metadata: { a: 1 } }, 'metadata.a'],
    [{ metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 'metadata'],
    [{ bogus: true }, 'body'],
  ])('create with %j → 400 naming %s, nothing made', async (body, field) => {
    // an unknown key has no field of its own: the message names the key
    const before = (await namespaceContainers(sys.config.namespace)).length;
    const r = await sys.http.post('/v1/sessions', body);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('invalid_request');
    expect(r.body.error.field).toBe(field);
    expect(r.body.error.message).toContain(field === 'body' ? 'bogus' : field);
    expect((await namespaceContainers(sys.config.namespace)).length).toBe(before);
  });

  test('malformed JSON → 400, wrong content type → 415, code over 1 MiB → 413, bad execute body → 400', async () => {
    const bad = await sys.http.post('/v1/sessions', '{"ttlSeconds": ', { 'content-type': 'application/json' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
    const text = await sys.http.post('/v1/sessions', 'ttlSeconds=60', { 'content-type': 'text/plain' });
    expect(text.status).toBe(415);
    expect(text.body.error.code).toBe('unsupported_media_type');
    const s = await sys.http.createSession();
    const big = await sys.http.post(`/v1/sessions/${s.id}/executions`, { code: '#' + 'x'.repeat(1024 * 1024) });
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe('payload_too_large');
    const noCode = await sys.http.post(`/v1/sessions/${s.id}/executions`, { timeoutMs: 1000 });
    expect(noCode.status).toBe(400);
    expect(noCode.body.error.field).toBe('code');
    const badTimeout = await sys.http.post(`/v1/sessions/${s.id}/executions`, { code: '1', timeoutMs: -1 });
    expect(badTimeout.status).toBe(400);
    expect(badTimeout.body.error.field).toBe('timeoutMs');
    const execText = await sys.http.post(`/v1/sessions/${s.id}/executions`, 'print(1)', { 'content-type': 'text/plain' });
    expect(execText.status).toBe(415);
    const unknownExec = await sys.http.get(`/v1/sessions/${s.id}/executions/6f1c0a8e-9d7b-4c35-8a4e-1f2b3c4d5e6f`);
    expect(unknownExec.status).toBe(404);
    expect(unknownExec.body.error.code).toBe('execution_not_found');
    await sys.http.delete(`/v1/sessions/${s.id}`);
  });

  test('/healthz answers 200 with Redis and the engine up', async () => {
    const r = await sys.http.get('/healthz');
    expect(r.status).toBe(200);
    expect(r.body.checks).toEqual({ redis: 'ok', 'docker:local': 'ok' });
  });
});

describe('failures leave nothing half-made', () => {
  test('an image the engine cannot start → 503, no container, no record', async () => {
    const broken = await startSystem({ SESSIONBOX_IMAGE: 'sessionbox/does-not-exist:nope' }, { worker: false });
    try {
      const r = await broken.http.post('/v1/sessions', {});
      expect(r.status).toBe(503);
      expect(r.body.error.code).toBe('container_start_failed');
      expect(await namespaceContainers(broken.config.namespace)).toHaveLength(0);
      expect((await broken.http.get('/v1/sessions')).body.sessions).toHaveLength(0);
    } finally {
      await broken.stop();
    }
  });

  test('/healthz names Redis when it does not answer', async () => {
    const broken = await startSystem({ SESSIONBOX_REDIS_URL: 'redis://127.0.0.1:1' }, { worker: false });
    try {
      const r = await broken.http.get('/healthz');
      expect(r.status).toBe(503);
      expect(r.body.error.code).toBe('redis_unavailable');
      expect(r.body.checks['docker:local']).toBe('ok');
      const create = await broken.http.post('/v1/sessions', {});
      expect(create.status).toBe(503);
      expect(await namespaceContainers(broken.config.namespace)).toHaveLength(0);
    } finally {
      await broken.api.close();
      await sleep(10);
    }
  });
});
