import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { KernelManager, ServerConnection, type Kernel, type KernelMessage } from '@jupyterlab/services';
import { Http, namespaceContainers, pngSize, startSystem, waitFor, type TestSystem } from './helpers/system';

// The token of each client is a sessionbox key; its name owns the kernels it starts.
const ALICE = 'alice-jupyter-key-0123456789';
const BOB = 'bob-jupyter-key-0123456789ab';

const PLOT = [
  'import matplotlib.pyplot as plt',
  'x = 21',
  'print("hello from the kernel")',
  'import sys; print("to stderr", file=sys.stderr)',
  'plt.plot([1, 3, 2]); plt.title("kernel plot")',
  'plt.show()',
  'x * 2',
].join('\n');

interface WireMessage {
  channel?: string;
  msg_type?: string;
  msg_id?: string;
  header: { msg_id: string; msg_type: string };
  parent_header: { msg_id?: string };
  content: any;
}

/**
 * Open WebUI's code interpreter (backend/open_webui/utils/code_interpreter.py, JupyterCodeExecuter), step by
 * step: POST api/kernels with ?token= and no body; a WebSocket with the token in the query and no
 * subprotocol; one execute_request (version 5.3); messages of other parents are skipped; stream,
 * execute_result/display_data and error are collected until status idle; then DELETE with ?token=.
 */
async function openWebUiExecute(base: string, token: string, code: string, keepKernel?: string) {
  const params = `?token=${token}`;
  let kernelId = keepKernel;
  if (!kernelId) {
    const created = await fetch(`${base}/api/kernels${params}`, { method: 'POST' });
    if (created.status !== 201) throw new Error(`POST api/kernels: ${created.status} ${await created.text()}`);
    kernelId = ((await created.json()) as { id: string }).id;
  }
  const ws = new WebSocket(`${base.replace('http', 'ws')}/api/kernels/${kernelId}/channels${params}`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const msgId = randomUUID().replace(/-/g, '');
  const all: WireMessage[] = [];
  const out = { stdout: '', stderr: '', result: [] as string[], images: [] as string[], protocol: ws.protocol };
  const done = new Promise<void>((resolve, reject) => {
    ws.on('message', (data, isBinary) => {
      if (isBinary) return reject(new Error('binary frame on a legacy (no subprotocol) connection'));
      const m = JSON.parse(data.toString()) as WireMessage;
      if (m.parent_header?.msg_id !== msgId) return;
      all.push(m);
      switch (m.msg_type) {
        case 'stream':
          if (m.content.name === 'stdout') out.stdout += m.content.text;
          else if (m.content.name === 'stderr') out.stderr += m.content.text;
          break;
        case 'execute_result':
        case 'display_data':
          if ('image/png' in m.content.data) {
            out.result.push(`data:image/png;base64,${m.content.data['image/png']}`);
            out.images.push(m.content.data['image/png']);
          } else if ('text/plain' in m.content.data) out.result.push(m.content.data['text/plain']);
          break;
        case 'error':
          out.stderr += (m.content.traceback as string[]).join('\n');
          break;
        case 'status':
          if (m.content.execution_state === 'idle') resolve();
          break;
      }
    });
    ws.once('close', () => reject(new Error('socket closed before idle')));
  });
  ws.send(
    JSON.stringify({
      header: { msg_id: msgId, msg_type: 'execute_request', username: 'user', session: randomUUID().replace(/-/g, ''), date: '', version: '5.3' },
      parent_header: {},
      metadata: {},
      content: { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true },
      channel: 'shell',
    }),
  );
  await done;
  // A last moment for anything sent after idle (there must be nothing).
  await new Promise((r) => setTimeout(r, 200));
  ws.close();
  let deleted: number | null = null;
  if (!keepKernel) deleted = (await fetch(`${base}/api/kernels/${kernelId}${params}`, { method: 'DELETE' })).status;
  return { kernelId: kernelId!, out, all, msgId, deleted };
}

describe('Jupyter kernels API (a session is a kernel)', () => {
  let sys: TestSystem;
  let alice: Http, bob: Http, anon: Http;

  beforeAll(async () => {
    // @jupyterlab/services logs every socket and status change with console.debug.
    jest.spyOn(console, 'debug').mockImplementation(() => undefined);
    sys = await startSystem({ SESSIONBOX_API_KEYS: `alice:${ALICE},bob:${BOB}` });
    alice = new Http(sys.url, { authorization: `token ${ALICE}` });
    bob = new Http(sys.url, { authorization: `bearer ${BOB}` });
    anon = new Http(sys.url);
  });
  afterAll(async () => {
    await sys?.stop();
  });

  test('REST shapes of jupyter_server: /api, kernelspecs, kernels start/list/get/delete; token forms; tenancy', async () => {
    expect((await alice.get('/api')).body).toEqual({ version: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    const specs = await alice.get('/api/kernelspecs');
    expect(specs.status).toBe(200);
    expect(specs.body.default).toBe('python3');
    expect(specs.body.kernelspecs.python3).toMatchObject({ name: 'python3', spec: { language: 'python', display_name: expect.any(String) }, resources: {} });

    // No token, a wrong one: 401, also on the WebSocket.
    expect((await anon.post('/api/kernels')).status).toBe(401);
    expect((await anon.get('/api/kernels?token=not-a-key-0123456789')).status).toBe(401);

    const created = await alice.post('/api/kernels', { name: 'python3' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ id: expect.any(String), name: 'python3', last_activity: expect.any(String), execution_state: 'idle', connections: 0 });
    expect(created.headers.get('location')).toBe(`/api/kernels/${created.body.id}`);
    const id = created.body.id as string;

    expect((await alice.get('/api/kernels')).body.map((k: { id: string }) => k.id)).toContain(id);
    expect((await alice.get(`/api/kernels/${id}`)).body).toMatchObject({ id, name: 'python3' });
    // The kernel is the session: it is there under /v1 too, with the same owner.
    expect((await alice.get(`/v1/sessions/${id}`, { authorization: `Bearer ${ALICE}` })).status).toBe(200);
    // Another tenant's token sees nothing of it, on REST and on the WebSocket.
    expect((await bob.get(`/api/kernels/${id}`)).status).toBe(404);
    expect((await bob.get('/api/kernels')).body).toEqual([]);
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${sys.url.replace('http', 'ws')}/api/kernels/${id}/channels?token=${BOB}`);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
    });
    expect(refused).toBe(404);
    const noToken = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${sys.url.replace('http', 'ws')}/api/kernels/${id}/channels`);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
    });
    expect(noToken).toBe(401);
    expect((await alice.post('/api/kernels', { name: 'ir' })).status).toBe(400);

    const del = await alice.delete(`/api/kernels/${id}`);
    expect(del.status).toBe(204);
    expect((await alice.get(`/api/kernels/${id}`)).status).toBe(410);
    expect((await namespaceContainers(sys.config.namespace)).filter((c) => c.Labels['sessionbox.session-id'] === id)).toEqual([]);
  });

  test("Open WebUI's exact flow: stdout, stderr, the figure as image/png, the result, idle last; then DELETE", async () => {
    const { out, all, msgId, deleted, kernelId } = await openWebUiExecute(sys.url, ALICE, PLOT);
    expect(out.protocol).toBe('');
    expect(out.stdout).toBe('hello from the kernel\n');
    expect(out.stderr).toBe('to stderr\n');
    expect(out.images).toHaveLength(1);
    const png = Buffer.from(out.images[0], 'base64');
    expect(pngSize(png)).toEqual({ width: 640, height: 480 });
    expect(out.result).toContain('42');
    const types = all.map((m) => m.msg_type);
    expect(types[0]).toBe('status');
    expect(all[0].content.execution_state).toBe('busy');
    expect(types[1]).toBe('execute_input');
    expect(types[types.length - 1]).toBe('status');
    expect(types).toContain('execute_reply');
    expect(types.indexOf('execute_reply')).toBeLessThan(types.length - 1);
    for (const m of all) {
      expect(m.parent_header.msg_id).toBe(msgId);
      expect(m.msg_type).toBe(m.header.msg_type);
      expect(m.msg_id).toBe(m.header.msg_id);
    }
    const result = all.find((m) => m.msg_type === 'execute_result')!;
    expect(result.content).toMatchObject({ execution_count: expect.any(Number), data: { 'text/plain': '42' } });
    const reply = all.find((m) => m.msg_type === 'execute_reply')!;
    expect(reply.channel).toBe('shell');
    expect(reply.content).toMatchObject({ status: 'ok', execution_count: result.content.execution_count });
    expect(deleted).toBe(204);
    expect((await alice.get(`/api/kernels/${kernelId}`)).status).toBe(410);
  });

  test('errors arrive as error messages with ename, evalue and a traceback list; unknown requests get an error reply', async () => {
    const k = (await alice.post('/api/kernels')).body.id as string;
    const { out, all } = await openWebUiExecute(sys.url, ALICE, 'y = 1\n1/0', k);
    const err = all.find((m) => m.msg_type === 'error')!;
    expect(err.content).toMatchObject({ ename: 'ZeroDivisionError', evalue: 'division by zero' });
    expect(Array.isArray(err.content.traceback)).toBe(true);
    expect(out.stderr).toContain('ZeroDivisionError');
    expect(all.find((m) => m.msg_type === 'execute_reply')!.content).toMatchObject({ status: 'error', ename: 'ZeroDivisionError' });

    // An unknown request: a clear error reply, framed by busy/idle like any other.
    const ws = new WebSocket(`${sys.url.replace('http', 'ws')}/api/kernels/${k}/channels?token=${ALICE}`);
    await new Promise((r) => ws.once('open', r));
    const header = { msg_id: randomUUID(), msg_type: 'inspect_request', username: 'u', session: 's', date: '', version: '5.3' };
    const reply = new Promise<WireMessage>((resolve) =>
      ws.on('message', (d) => {
        const m = JSON.parse(d.toString()) as WireMessage;
        if (m.parent_header.msg_id === header.msg_id && m.channel === 'shell') resolve(m);
      }),
    );
    ws.send(JSON.stringify({ channel: 'shell', header, parent_header: {}, metadata: {}, content: { code: 'x', cursor_pos: 1 } }));
    const r = await reply;
    ws.close();
    expect(r.msg_type).toBe('inspect_reply');
    expect(r.content).toMatchObject({ status: 'error', ename: 'NotImplementedError', evalue: expect.stringContaining('inspect_request') });
    expect((await alice.delete(`/api/kernels/${k}`)).status).toBe(204);
  });

  test('@jupyterlab/services in Node: startNew, requestExecute with iopub, state across requests, interrupt, restart, shutdown', async () => {
    const serverSettings = ServerConnection.makeSettings({ baseUrl: `${sys.url}/`, wsUrl: `${sys.url.replace('http', 'ws')}/`, token: ALICE, WebSocket: WebSocket as any });
    const manager = new KernelManager({ serverSettings });
    await manager.ready;
    const kernel = await manager.startNew({ name: 'python3' });
    try {
      const info = await kernel.info;
      expect(info.protocol_version).toBe('5.3');
      expect(info.language_info.name).toBe('python');
      // The client offered the binary subprotocol and the server took it.
      expect((kernel as any)._ws.protocol).toBe('v1.kernel.websocket.jupyter.org');

      const run = async (code: string) => {
        const iopub: KernelMessage.IIOPubMessage[] = [];
        const future = kernel.requestExecute({ code });
        future.onIOPub = (msg) => void iopub.push(msg);
        const reply = await future.done;
        return { reply: reply as KernelMessage.IExecuteReplyMsg, iopub };
      };
      const first = await run('import matplotlib.pyplot as plt\nstate = [1, 2]\nprint("chunk one")\nplt.plot(state)\nplt.show()\nlen(state)');
      expect(first.reply.content.status).toBe('ok');
      const kinds = first.iopub.map((m) => m.header.msg_type);
      expect(kinds).toEqual(expect.arrayContaining(['status', 'execute_input', 'stream', 'display_data', 'execute_result']));
      expect(kinds[kinds.length - 1]).toBe('status');
      const fig = first.iopub.find((m) => m.header.msg_type === 'display_data') as KernelMessage.IDisplayDataMsg;
      expect(pngSize(Buffer.from(fig.content.data['image/png'] as string, 'base64')).width).toBe(640);
      expect((first.iopub.find((m) => m.header.msg_type === 'execute_result') as KernelMessage.IExecuteResultMsg).content.data['text/plain']).toBe('2');

      // State persists: the kernel is one long-lived interpreter.
      const second = await run('state.append(3)\nsum(state)');
      expect((second.iopub.find((m) => m.header.msg_type === 'execute_result') as KernelMessage.IExecuteResultMsg).content.data['text/plain']).toBe('6');
      expect(second.reply.content.execution_count).toBeGreaterThan(first.reply.content.execution_count as number);

      // Interrupt a long cell over REST (KernelConnection.interrupt): KeyboardInterrupt, state kept.
      const sleeper = kernel.requestExecute({ code: 'import time\nprint("sleeping", flush=True)\ntime.sleep(60)' });
      const sleeperIopub: KernelMessage.IIOPubMessage[] = [];
      let resolveStarted!: () => void;
      const started = new Promise<void>((r) => (resolveStarted = r));
      sleeper.onIOPub = (msg) => {
        sleeperIopub.push(msg);
        if (msg.header.msg_type === 'stream') resolveStarted();
      };
      await started;
      await kernel.interrupt();
      const interrupted = (await sleeper.done) as KernelMessage.IExecuteReplyMsg;
      expect(interrupted.content).toMatchObject({ status: 'error', ename: 'KeyboardInterrupt' });
      expect((await run('sum(state)')).iopub.find((m) => m.header.msg_type === 'execute_result')!.content).toMatchObject({ data: { 'text/plain': '6' } });

      // Restart: a fresh interpreter in the same kernel (variables gone).
      await kernel.restart();
      const after = await run('"state" in globals()');
      expect((after.iopub.find((m) => m.header.msg_type === 'execute_result') as KernelMessage.IExecuteResultMsg).content.data['text/plain']).toBe('False');
    } finally {
      await kernel.shutdown();
      manager.dispose();
    }
    expect((await alice.get(`/api/kernels/${kernel.id}`)).status).toBe(410);
  });

  test('the kernel is a session: it expires on its TTL, and then its REST model and WebSocket answer 410', async () => {
    const created = await alice.post('/api/kernels', { name: 'python3', ttlSeconds: 10 });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const { out } = await openWebUiExecute(sys.url, ALICE, 'print("alive")', id);
    expect(out.stdout).toBe('alive\n');
    await waitFor(async () => (await alice.get(`/api/kernels/${id}`)).status === 410, 30_000, 500);
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${sys.url.replace('http', 'ws')}/api/kernels/${id}/channels?token=${ALICE}`);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
    });
    expect(status).toBe(410);
    expect((await namespaceContainers(sys.config.namespace)).filter((c) => c.Labels['sessionbox.session-id'] === id)).toEqual([]);
  });
});
