import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runAdminCli } from './helpers/admin-cli';
import { checkpointUnavailable, runscSkipReason } from './helpers/runsc';
import { describeIf, docker, namespaceContainers, TEST_ARCHIVE_DIR, useSystem, waitFor } from './helpers/system';

// Issue 17, "exact state under gVisor": under runsc, with the engine's experimental setting, a
// session hibernates by a checkpoint of its whole container (which stays, stopped) and wakes by
// starting it from that checkpoint, so even what dill cannot save (a generator mid-way, a socket
// with unread data) comes back. The dill path (tests/hibernate.test.ts) is the fallback.
const missing = runscSkipReason('checkpoint hibernation') ?? checkpointUnavailable();

const HIBERNATE = { SESSIONBOX_ON_IDLE: 'hibernate', SESSIONBOX_DEFAULT_TTL_SECONDS: '10', SESSIONBOX_RUNTIME: 'runsc' };

const SETUP = `
import socket
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
df = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})
def double(v):
    return v * 2
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
gen = (i * 10 for i in range(5))
first = next(gen)
left, right = socket.socketpair()
left.sendall(b'sent before hibernation')
with open('/work/note.txt', 'w') as f:
    f.write('kept')
print('set up')
`;

const CHECK = `
import os
print(df['a'].sum(), double(20), first, next(gen), next(gen))
print(right.recv(100).decode())
left.sendall(b'and after')
print(right.recv(100).decode())
print(open('/work/note.txt').read(), os.path.exists('/work/.sessionbox-state.dill'))
ax.set_title('after wake')
display(fig)
`;

/** dockerode has the checkpoint calls; its typings do not. */
const checkpointsOf = async (id: string) => {
  const list = await (docker.getContainer(id) as unknown as { listCheckpoint(): Promise<unknown> }).listCheckpoint();
  // With none, the engine's answer is not a JSON list and dockerode hands back its bytes.
  return Array.isArray(list) ? list.map((c: { Name: string }) => c.Name) : [];
};

describeIf(missing)('hibernation under runsc by checkpoint/restore (exact state)', () => {
  const sys = useSystem(HIBERNATE);

  const containersOf = async (sid: string) => (await namespaceContainers(sys.config.namespace)).filter((c) => c.Labels['sessionbox.session-id'] === sid);
  const archivesOf = (sid: string) => {
    const dir = join(TEST_ARCHIVE_DIR, sys.config.namespace);
    return existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith(sid)) : [];
  };
  const waitHibernated = async (sid: string) =>
    (
      await waitFor(async () => {
        const got = await sys.http.get(`/v1/sessions/${sid}`);
        return got.body.status === 'hibernated' ? got : null;
      }, 90_000, 250)
    ).body;

  test('a generator, a socket with unread data, a DataFrame, a function, a figure and /work come back as they were; the container stays, stopped; the next hibernation takes the dill path', async () => {
    const s = await sys.http.createSession({ ttlSeconds: 10, onIdle: 'hibernate' });
    expect((await sys.http.run(s.id, SETUP)).stdout).toBe('set up\n');
    const [before] = await containersOf(s.id);
    expect(before).toBeDefined();

    const hib = await waitHibernated(s.id);
    expect(hib.hibernatedAt).toEqual(expect.any(String));
    // The same container, stopped (no RAM), holding its checkpoint; the dill state and files are archived as the fallback.
    const held = await containersOf(s.id);
    expect(held.map((c) => c.Id)).toEqual([before.Id]);
    const stopped = await docker.getContainer(before.Id).inspect();
    expect(stopped.State.Running).toBe(false);
    expect(stopped.HostConfig.Runtime).toBe('runsc');
    expect(await checkpointsOf(before.Id)).toEqual(['sessionbox-hibernate']);
    expect(archivesOf(s.id)).toHaveLength(1);

    // Through the worker that ran SETUP: its kernel channel to the container's first run must not be reused.
    const woke = await sys.http.run(s.id, CHECK);
    expect(woke.status).toBe('succeeded');
    expect(woke.restored).toBe(true);
    expect(woke.notes).toEqual([]);
    expect(woke.stdout).toBe('6 40 0 10 20\nsent before hibernation\nand after\nkept False\n');
    expect(woke.figures).toHaveLength(1);
    expect((await containersOf(s.id)).map((c) => c.Id)).toEqual([before.Id]);
    expect((await docker.getContainer(before.Id).inspect()).State.Running).toBe(true);
    expect(await checkpointsOf(before.Id)).toEqual([]);
    expect(archivesOf(s.id)).toHaveLength(0);
    expect((await sys.http.get(`/v1/sessions/${s.id}`)).body.status).toBe('ready');

    const next = await sys.http.run(s.id, 'print(next(gen))');
    expect(next.restored).toBeUndefined();
    expect(next.stdout).toBe('30\n');

    // A second idle period: a container started from a checkpoint is not checkpointed again (the
    // engine could not restore it a second time), so this one takes the dill path: the container goes.
    await waitHibernated(s.id);
    expect(await containersOf(s.id)).toHaveLength(0);
    const again = await sys.http.run(s.id, "print(df.shape, double(4), open('/work/note.txt').read())");
    expect(again.restored).toBe(true);
    expect(again.stdout).toBe('(3, 2) 8 kept\n');
    expect(again.notes.join('\n')).toMatch(/gen was not restored: a generator/);
    expect(await containersOf(s.id)).toHaveLength(1);
    expect((await sys.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
    expect(await containersOf(s.id)).toHaveLength(0);

    const api = (await sys.http.get('/metrics')).raw.toString('utf8');
    expect(api).toMatch(/sessionbox_hibernation_total\{event="woken_checkpoint"\} [1-9]/);
  });

  test('DELETE and the admin purge remove a checkpointed container; without its checkpoint a session wakes by the dill path', async () => {
    const [d, p, f] = await Promise.all([0, 1, 2].map(() => sys.http.createSession({ ttlSeconds: 10 })));
    await sys.http.run(d.id, 'x = 1');
    await sys.http.run(p.id, 'x = 2');
    await sys.http.run(f.id, "import socket\nsock = socket.socket()\nx = 3\nopen('/work/f.txt', 'w').write('file')");
    for (const s of [d, p, f]) await waitHibernated(s.id);
    for (const s of [d, p, f]) {
      const held = await containersOf(s.id);
      expect(held.map((c) => c.State)).toEqual(['exited']);
      expect(await checkpointsOf(held[0].Id)).toEqual(['sessionbox-hibernate']);
    }

    expect((await sys.http.delete(`/v1/sessions/${d.id}`)).status).toBe(204);
    expect(await containersOf(d.id)).toHaveLength(0);
    expect(archivesOf(d.id)).toHaveLength(0);
    expect((await sys.http.get(`/v1/sessions/${d.id}`)).status).toBe(410);

    const cliEnv = { SESSIONBOX_NAMESPACE: sys.config.namespace, SESSIONBOX_REDIS_URL: sys.config.redisUrl, SESSIONBOX_ARCHIVE_DIR: TEST_ARCHIVE_DIR };
    const purged = await runAdminCli(['hibernated', '--purge', '--json', p.id], cliEnv);
    expect(purged.code).toBe(0);
    expect(JSON.parse(purged.stdout).sessions).toEqual([expect.objectContaining({ id: p.id, purged: true })]);
    expect(await containersOf(p.id)).toHaveLength(0);
    expect(archivesOf(p.id)).toHaveLength(0);

    // The checkpoint is gone (an operator, a failed disk): the stopped container goes and the archive wakes it.
    const [old] = await containersOf(f.id);
    await (docker.getContainer(old.Id) as unknown as { deleteCheckpoint(n: string): Promise<unknown> }).deleteCheckpoint('sessionbox-hibernate');
    const woke = await sys.http.run(f.id, "print(x, open('/work/f.txt').read())");
    expect(woke.restored).toBe(true);
    expect(woke.stdout).toBe('3 file\n');
    expect(woke.notes.join('\n')).toMatch(/sock was not restored/);
    const now = await containersOf(f.id);
    expect(now).toHaveLength(1);
    expect(now[0].Id).not.toBe(old.Id);
    expect((await sys.http.delete(`/v1/sessions/${f.id}`)).status).toBe(204);
    expect(await containersOf(f.id)).toHaveLength(0);
  });
});
