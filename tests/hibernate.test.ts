import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { namespaceContainers, useSystem, waitFor } from './helpers/system';

// Issue 17 on the real engine: sessions that hibernate at their idle TTL and wake on the next use.
// The operator default here is "hibernate" so that sessions the LLM tool and MCP make hibernate too.
const sys = useSystem({ SESSIONBOX_ON_IDLE: 'hibernate', SESSIONBOX_DEFAULT_TTL_SECONDS: '10' });

const SETUP = `
import math, socket
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
df = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})
arr = np.arange(5)
k = 1
def double(v):
    return v * 2 + k
class Point:
    def __init__(self, x):
        self.x = x
p = Point(7)
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
sock = socket.socket()
gen = (i for i in range(3))
print('set up')
`;

const CHECK = `
print(df['a'].sum(), double(20), p.x, int(arr.sum()), math.floor(math.pi), type(p).__name__)
k = 5
print('globals', double(1))
ax.set_title('after wake')
display(fig)
`;

const sessionContainers = async (sid: string) =>
  (await namespaceContainers(sys.config.namespace)).filter((c) => c.Labels['sessionbox.session-id'] === sid);

// Polls the list, which does not touch: GET /v1/sessions/{id} counts as use and moves the idle TTL.
async function waitHibernated(sid: string) {
  await waitFor(async () => {
    const r = await sys.http.get('/v1/sessions?status=hibernated');
    return r.body.sessions.some((x: { id: string }) => x.id === sid);
  }, 60_000, 250);
  const r = await sys.http.get(`/v1/sessions/${sid}`);
  expect(r.body.status).toBe('hibernated');
  return r.body;
}

describe('hibernation (onIdle: "hibernate")', () => {
  test('REST: a DataFrame, a function and a figure survive the idle TTL with the container gone; a socket is named as lost', async () => {
    const s = await sys.http.createSession({ ttlSeconds: 10, onIdle: 'hibernate' });
    expect(s.onIdle).toBe('hibernate');
    const setup = await sys.http.run(s.id, SETUP);
    expect(setup.stdout).toBe('set up\n');
    expect(await sessionContainers(s.id)).toHaveLength(1);

    const hib = await waitHibernated(s.id);
    expect(hib.hibernatedAt).toEqual(expect.any(String));
    expect(Date.parse(hib.wakeUntil) - Date.parse(hib.hibernatedAt)).toBeGreaterThan(6 * 86400 * 1000);
    expect(await sessionContainers(s.id)).toHaveLength(0);

    const woke = await sys.http.run(s.id, CHECK);
    expect(woke.status).toBe('succeeded');
    expect(woke.restored).toBe(true);
    expect(woke.stdout).toBe('6 41 7 10 3 Point\nglobals 7\n');
    expect(woke.figures).toHaveLength(1);
    expect(woke.notes.join('\n')).toMatch(/sock was not restored: .*socket/);
    expect(woke.notes.join('\n')).toMatch(/gen was not restored: a generator/);
    expect(await sessionContainers(s.id)).toHaveLength(1);
    expect((await sys.http.get(`/v1/sessions/${s.id}`)).body.status).toBe('ready');

    // Only the run that woke it carries restored; the state file is gone from the user's files.
    const next = await sys.http.run(s.id, "import os\nprint(os.path.exists('/work/.sessionbox-state.dill'))");
    expect(next.restored).toBeUndefined();
    expect(next.stdout).toBe('False\n');
    expect((await sys.http.delete(`/v1/sessions/${s.id}`)).status).toBe(204);
  });

  test('DELETE ends a hibernated session for good; onIdle "destroy" still ends at the TTL', async () => {
    const h = await sys.http.createSession({ ttlSeconds: 10 });
    await sys.http.run(h.id, 'x = 1');
    await waitHibernated(h.id);
    expect((await sys.http.delete(`/v1/sessions/${h.id}`)).status).toBe(204);
    expect((await sys.http.post(`/v1/sessions/${h.id}/executions?wait=true`, { code: 'x' })).status).toBe(410);

    const d = await sys.http.createSession({ ttlSeconds: 10, onIdle: 'destroy' });
    await sys.http.run(d.id, 'x = 1');
    await waitFor(async () => {
      const r = await sys.http.get('/v1/sessions?status=terminated');
      return r.body.sessions.some((x: { id: string }) => x.id === d.id);
    }, 60_000, 250);
    const gone = await sys.http.get(`/v1/sessions/${d.id}`);
    expect(gone.status).toBe(410);
    expect(gone.body.error.code).toBe('session_expired');
    expect(await sessionContainers(d.id)).toHaveLength(0);
  });

  test('the LLM tool: the same session_id keeps working after hibernation', async () => {
    const first = await sys.http.post('/v1/tools/execute_python', { code: SETUP });
    expect(first.body).toMatchObject({ ok: true, session_created: true });
    const sid = first.body.session_id as string;
    await waitHibernated(sid);
    const again = await sys.http.post('/v1/tools/execute_python', { code: CHECK, session_id: sid });
    expect(again.body).toMatchObject({ ok: true, session_id: sid, session_created: false, execution: { status: 'succeeded', restored: true } });
    expect(again.body.text).toContain('6 41 7 10 3 Point');
    expect(again.body.execution.notes.join('\n')).toContain('sock was not restored');
    expect((await sys.http.delete(`/v1/sessions/${sid}`)).status).toBe(204);
  });

  test('MCP: execute_python wakes a hibernated session', async () => {
    const client = new Client({ name: 'sessionbox-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${sys.url}/mcp`)));
    try {
      const text = async (args: Record<string, unknown>) => {
        const r = await client.callTool({ name: 'execute_python', arguments: args });
        return (r.content as { type: string; text?: string }[]).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
      };
      const created = await client.callTool({ name: 'create_session', arguments: {} });
      const sid = (created.structuredContent as { session_id: string }).session_id;
      expect(await text({ session_id: sid, code: SETUP })).toContain('set up');
      await waitHibernated(sid);
      expect(await sessionContainers(sid)).toHaveLength(0);
      expect(await text({ session_id: sid, code: CHECK })).toContain('6 41 7 10 3 Point');
      await client.callTool({ name: 'close_session', arguments: { session_id: sid } });
    } finally {
      await client.close();
    }
  });
});
