import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { namespaceContainers, pngSize, startSystem, waitFor, stopExpectingNoLeak, type TestSystem } from './helpers/system';

let sys: TestSystem;
let client: Client;

type Content = { type: string; text?: string; data?: string; mimeType?: string };

async function call(name: string, args: Record<string, unknown>) {
  const r = await client.callTool({ name, arguments: args });
  const content = r.content as Content[];
  return { isError: !!r.isError, content, text: content.filter((c) => c.type === 'text').map((c) => c.text).join('\n'), structured: r.structuredContent as any };
}

const sessionContainers = async (sid: string) =>
  (await namespaceContainers(sys.config.namespace)).filter((c) => c.Labels['sessionbox.session-id'] === sid);

beforeAll(async () => {
  sys = await startSystem();
  client = new Client({ name: 'sessionbox-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${sys.url}/mcp`)));
});
afterAll(async () => {
  await client?.close();
  if (sys) await stopExpectingNoLeak(sys);
});

describe('MCP server (Streamable HTTP, official SDK client)', () => {
  test('lists execute_python, create_session and close_session with their input schemas', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['close_session', 'create_session', 'execute_python']);
    const exec = tools.find((t) => t.name === 'execute_python')!;
    expect(exec.inputSchema.required).toEqual(['code']);
    expect(Object.keys(exec.inputSchema.properties ?? {}).sort()).toEqual(['code', 'session_id']);
    expect(exec.description).toContain('session_id');
  });

  test('figures come back as PNG image content; state persists via session_id; close_session removes the container', async () => {
    const created = await call('create_session', {});
    const sid = created.structured.session_id as string;
    expect(created.text).toContain(sid);
    expect(await sessionContainers(sid)).toHaveLength(1);

    const fig = await call('execute_python', {
      session_id: sid,
      code: "import matplotlib.pyplot as plt\nx = 20\nfig, ax = plt.subplots()\nax.bar(['東京', '大阪'], [3, 5])\nax.set_title('売上')\nplt.show()\nprint('drawn')",
    });
    expect(fig.isError).toBe(false);
    expect(fig.text).toContain('drawn');
    expect(fig.text).toMatch(/figure 1 \(\d+x\d+ px, shown to the user\): http/);
    const images = fig.content.filter((c) => c.type === 'image');
    expect(images).toHaveLength(1);
    expect(images[0].mimeType).toBe('image/png');
    const png = Buffer.from(images[0].data!, 'base64');
    expect(pngSize(png).width).toBeGreaterThan(100);

    const again = await call('execute_python', { session_id: sid, code: 'print(x + 22)' });
    expect(again.text).toContain('42');
    expect(again.content.filter((c) => c.type === 'image')).toHaveLength(0);

    const closed = await call('close_session', { session_id: sid });
    expect(closed.isError).toBe(false);
    expect(await sessionContainers(sid)).toHaveLength(0);

    const after = await call('execute_python', { session_id: sid, code: 'print(x)' });
    expect(after.isError).toBe(true);
    expect(after.text).toMatch(/has ended.*session_id null/);
  });

  test('execute_python without session_id starts one; errors are isError results with the traceback', async () => {
    const r = await call('execute_python', { code: "d = {'a': 1}\nd['b']" });
    expect(r.isError).toBe(true);
    expect(r.text).toContain("KeyError: 'b'");
    const sid = /session_id: (\S+) \(a new session/.exec(r.text)![1];
    expect(await sessionContainers(sid)).toHaveLength(1);
    expect((await call('execute_python', { code: "d['a']", session_id: sid })).text).toContain('result: 1');
    await call('close_session', { session_id: sid });
    await waitFor(async () => (await sessionContainers(sid)).length === 0, 10_000);

    const unknown = await call('execute_python', { code: 'print(1)', session_id: '00000000-0000-4000-8000-00000000beef' });
    expect(unknown.isError).toBe(true);
    expect(unknown.text).toContain('does not exist');
    const badClose = await call('close_session', { session_id: 'nope' });
    expect(badClose.isError).toBe(true);
  });

  test('GET /mcp is 405 (stateless server, no standalone stream)', async () => {
    const r = await sys.http.get('/mcp', { accept: 'text/event-stream' });
    expect(r.status).toBe(405);
  });
});
