import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runConversation } from '../examples/function-calling';
import { namespaceContainers, startSystem, stopExpectingNoLeak, type TestSystem } from './helpers/system';

let sys: TestSystem;
let fake: Server;
let fakeUrl: string;
const seen: any[] = [];

const CODE = 'import math\nprint("sum of squares:", sum(i * i for i in range(10)), "5! =", math.factorial(5))';

async function readJson(req: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** An OpenAI-compatible chat endpoint: asks for one tool call, then answers quoting what the tool printed. */
function fakeChat(body: any) {
  const last = body.messages.at(-1);
  const base = { id: `chatcmpl-${seen.length}`, object: 'chat.completion', created: 0, model: body.model };
  if (last.role === 'user') {
    return {
      ...base,
      choices: [
        {
          index: 0,
          finish_reason: 'tool_calls',
          message: {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'call_abc', type: 'function', function: { name: 'execute_python', arguments: JSON.stringify({ code: CODE, session_id: null }) } }],
          },
        },
      ],
    };
  }
  const printed = String(last.content).split('\n').find((l: string) => l.includes('sum of squares')) ?? '(nothing)';
  return { ...base, choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: `The tool printed: "${printed.trim()}"` } }] };
}

beforeAll(async () => {
  sys = await startSystem();
  fake = createServer(async (req, res) => {
    const body = await readJson(req);
    seen.push({ path: req.url, auth: req.headers.authorization, body });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(fakeChat(body)));
  });
  await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
  fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}/v1`;
});
afterAll(async () => {
  await new Promise((r) => fake.close(r));
  if (sys) await stopExpectingNoLeak(sys);
});

test('runConversation: the model calls execute_python, the code runs in a real session, the answer quotes its output', async () => {
  const result = await runConversation({
    prompt: 'What is the sum of the squares of 0..9, and 5 factorial?',
    sessionboxUrl: sys.url,
    openaiBaseUrl: fakeUrl,
    openaiApiKey: 'sk-test',
    model: 'fake-model',
  });

  // The chat endpoint got the tool definition from GET /v1/tools?format=openai.
  expect(seen).toHaveLength(2);
  expect(seen[0]).toMatchObject({ path: '/v1/chat/completions', auth: 'Bearer sk-test' });
  expect(seen[0].body.tools).toEqual([
    expect.objectContaining({ type: 'function', function: expect.objectContaining({ name: 'execute_python', strict: true }) }),
  ]);

  // The tool message holds the output of really running the code (285 and 120 were computed by Python).
  const toolMsg = result.messages.find((m) => m.role === 'tool') as { role: 'tool'; tool_call_id: string; content: string };
  expect(toolMsg.tool_call_id).toBe('call_abc');
  expect(toolMsg.content).toContain('sum of squares: 285 5! = 120');
  expect(seen[1].body.messages.at(-1)).toEqual(toolMsg);
  expect(result.toolCalls).toBe(1);
  expect(result.text).toBe('The tool printed: "sum of squares: 285 5! = 120"');

  // It was a real session, and the loop deleted it at the end.
  expect(result.sessionIds).toHaveLength(1);
  expect(toolMsg.content).toContain(result.sessionIds[0]);
  const after = await sys.http.get(`/v1/sessions/${result.sessionIds[0]}`);
  expect(after.status).toBe(410);
  expect(await namespaceContainers(sys.config.namespace)).toHaveLength(0);
});
