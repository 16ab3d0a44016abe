import { ConversationSession, SessionGoneError, SessionboxAuthError, createSession, type StreamEvent } from '@sessionbox/client';
import { sessionboxLangChainTool } from '@sessionbox/client/langchain';
import { sessionboxAiTool } from '@sessionbox/client/ai';
import { sessionboxAgentsTool } from '@sessionbox/client/openai-agents';
import { fakeModel } from '@langchain/core/testing';
import { AIMessage, HumanMessage, type BaseMessage } from '@langchain/core/messages';
import { generateText, stepCountIs } from 'ai';
import { MockLanguageModelV3 } from 'ai/test';
import { Agent, Runner, setTracingDisabled } from '@openai/agents';
import { ScriptedModel, assistantMessage, functionCall } from '@openai/agents/testing';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { namespaceContainers, startSystem, type TestSystem } from './helpers/system';

const KEY = 'tools-key-0123456789abcdef';
let sys: TestSystem;
let conn: { baseUrl: string; apiKey: string };

beforeAll(async () => {
  setTracingDisabled(true);
  sys = await startSystem({ SESSIONBOX_API_KEYS: `tools:${KEY}` });
  conn = { baseUrl: sys.url, apiKey: KEY };
});
afterAll(async () => {
  await sys?.stop();
});

const liveSessions = async () => (await namespaceContainers(sys.config.namespace)).filter((c) => c.State === 'running').length;

describe('@sessionbox/client: the three-line use', () => {
  test('createSession, execute awaited and streamed, files, close; typed errors', async () => {
    const session = await createSession({ ...conn, metadata: { app: 'client-tools' } });
    const ex = await session.execute('import pandas as pd\ntotal = pd.Series([1, 2, 3]).sum()\nprint(total)\ntotal * 2');
    expect(ex).toMatchObject({ status: 'succeeded', stdout: '6\n', result: '12' });

    const events: StreamEvent[] = [];
    for await (const ev of session.stream('import sys\nprint("a", flush=True)\nprint("b", file=sys.stderr)\ntotal')) events.push(ev);
    expect(events[0].type).toBe('started');
    expect(events.filter((e) => e.type === 'stdout').map((e) => (e as { text: string }).text).join('')).toBe('a\n');
    expect(events.filter((e) => e.type === 'stderr').map((e) => (e as { text: string }).text).join('')).toBe('b\n');
    const last = events[events.length - 1];
    expect(last.type === 'done' && last.execution.result).toBe('6');

    await session.files.upload('data/in.csv', 'x\n1\n2\n');
    expect((await session.execute('open("data/in.csv").read().count("\\n")')).result).toBe('3');
    expect((await session.files.list()).map((f) => f.path)).toContain('data/in.csv');
    expect((await session.files.download('data/in.csv')).toString()).toBe('x\n1\n2\n');
    await session.files.delete('data/in.csv');
    expect((await session.files.list()).map((f) => f.path)).not.toContain('data/in.csv');

    await session.close();
    await expect(session.execute('1')).rejects.toBeInstanceOf(SessionGoneError);
    await expect(createSession({ baseUrl: sys.url, apiKey: 'wrong-key-0123456789abcdef' })).rejects.toBeInstanceOf(SessionboxAuthError);
  });
});

describe('framework tools: a real tool-call round trip through each framework, one session per conversation', () => {
  test("LangChain.js: @langchain/core/testing fakeModel().respondWithTools drives the tool; state carries to the next call", async () => {
    const conv = new ConversationSession({ client: conn });
    const execute = sessionboxLangChainTool(conv);
    const model = fakeModel()
      .respondWithTools([{ name: 'execute_python', args: { code: 'langchain_state = 40\nprint("set")' }, id: 'call_1' }])
      .respondWithTools([{ name: 'execute_python', args: { code: 'langchain_state + 2' }, id: 'call_2' }])
      .respond((msgs) => new AIMessage(`final: ${String(msgs[msgs.length - 1].content)}`));
    const bound = model.bindTools([execute]);
    const messages: BaseMessage[] = [new HumanMessage('compute')];
    for (let turn = 0; turn < 3; turn++) {
      const ai = (await bound.invoke(messages)) as AIMessage;
      messages.push(ai);
      if (!ai.tool_calls?.length) break;
      for (const call of ai.tool_calls) messages.push(await execute.invoke(call));
    }
    const toolMessages = messages.filter((m) => m.getType() === 'tool');
    expect(toolMessages).toHaveLength(2);
    expect(String(toolMessages[0].content)).toMatch(/^stdout:\nset\n/m);
    expect(String(toolMessages[1].content)).toMatch(/^result: 42$/m);
    expect(String(messages[messages.length - 1].content)).toMatch(/result: 42$/m);
    const sid = await conv.sessionId;
    expect(sid).toEqual(expect.any(String));
    expect(await liveSessions()).toBe(1);
    await conv.close();
    expect(await liveSessions()).toBe(0);
  });

  test("Vercel AI SDK: ai/test MockLanguageModelV3 emits a tool-call; generateText runs the tool and feeds the result back", async () => {
    const conv = new ConversationSession({ client: conn });
    const usage = {
      inputTokens: { total: 1, noCache: 1, cacheRead: undefined, cacheWrite: undefined },
      outputTokens: { total: 1, text: 1, reasoning: undefined },
    };
    let seenToolResult = '';
    const model = new MockLanguageModelV3({
      doGenerate: async (opts) => {
        const toolMsg = opts.prompt.find((m) => m.role === 'tool');
        if (!toolMsg) {
          return {
            content: [{ type: 'tool-call', toolCallId: 'call_ai', toolName: 'execute_python', input: JSON.stringify({ code: 'ai_value = 6 * 7\nai_value' }) }],
            finishReason: { unified: 'tool-calls', raw: 'tool_calls' },
            usage,
            warnings: [],
          };
        }
        seenToolResult = JSON.stringify(toolMsg.content);
        return { content: [{ type: 'text', text: 'the answer is 42' }], finishReason: { unified: 'stop', raw: 'stop' }, usage, warnings: [] };
      },
    });
    const result = await generateText({ model, tools: { execute_python: sessionboxAiTool(conv) }, stopWhen: stepCountIs(3), prompt: 'compute' });
    expect(result.steps).toHaveLength(2);
    expect(result.steps[0].toolCalls[0]).toMatchObject({ toolName: 'execute_python' });
    expect(String(result.steps[0].toolResults[0].output)).toMatch(/^result: 42$/m);
    expect(seenToolResult).toContain('result: 42');
    expect(result.text).toBe('the answer is 42');
    // The same conversation keeps its session: the variable is still there.
    expect(await conv.run('ai_value + 1')).toMatch(/^result: 43$/m);
    await conv.close();
  });

  test('OpenAI Agents SDK: @openai/agents/testing ScriptedModel with functionCall under a Runner with tracing disabled', async () => {
    const conv = new ConversationSession({ client: conn });
    const model = new ScriptedModel([
      [functionCall('execute_python', { code: 'agents_value = sum(range(10))\nagents_value' }, { callId: 'call_agents' })],
      [assistantMessage('45 it is')],
    ]);
    const agent = new Agent({ name: 'analyst', instructions: 'use the tool', model, tools: [sessionboxAgentsTool(conv)] });
    const run = await new Runner({ tracingDisabled: true }).run(agent, 'sum 0..9');
    expect(run.finalOutput).toBe('45 it is');
    const output = run.newItems.find((i) => i.type === 'tool_call_output_item') as { output: unknown } | undefined;
    expect(String(output?.output)).toMatch(/^result: 45$/m);
    // The model's second turn saw the tool's output.
    expect(JSON.stringify(model.calls[1])).toContain('result: 45');
    expect(await conv.run('agents_value * 2')).toMatch(/^result: 90$/m);
    await conv.close();
  });
});

describe('Dify and Flowise request bodies from the README part', () => {
  const doc = readFileSync(join(__dirname, '../docs/readme-parts/jupyter-and-frameworks.md'), 'utf8');

  test("Dify's execute_python tool bodies: session_id null makes a session, passing it back keeps the state", async () => {
    const post = async (body: unknown) =>
      (await (await fetch(`${sys.url}/v1/tools/execute_python`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) })).json()) as any;
    const first = await post({ code: 'x = 1\nprint(x)', session_id: null });
    expect(first).toMatchObject({ ok: true, session_created: true });
    expect(doc).toContain('{"code": "x = 1\\nprint(x)", "session_id": null}');
    const second = await post({ code: 'x + 1', session_id: first.session_id });
    expect(second).toMatchObject({ ok: true, session_created: false, session_id: first.session_id });
    expect(second.text).toMatch(/^result: 2$/m);
    await fetch(`${sys.url}/v1/sessions/${first.session_id}`, { method: 'DELETE', headers: { authorization: `Bearer ${KEY}` } });
  });

  test('the Flowise Custom Tool keeps one session per chat ($flow.sessionId in metadata)', async () => {
    const block = /```js flowise-custom-tool\n([\s\S]*?)```/.exec(doc);
    expect(block).not.toBeNull();
    // Flowise runs the function body with $flow, $vars and each schema property as $<name>.
    const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor;
    const tool = new AsyncFunction('$flow', '$vars', '$code', 'fetch', block![1]);
    const $vars = { SESSIONBOX_URL: sys.url, SESSIONBOX_KEY: KEY };
    const chatA = { sessionId: 'chat-a' };
    const chatB = { sessionId: 'chat-b' };
    expect(await tool(chatA, $vars, 'flowise_x = 20\nprint("set")', fetch)).toMatch(/^stdout:\nset\n/m);
    expect(await tool(chatB, $vars, '"flowise_x" in globals()', fetch)).toMatch(/^result: False$/m);
    expect(await tool(chatA, $vars, 'flowise_x + 22', fetch)).toMatch(/^result: 42$/m);
    const list = async (chat: string) =>
      ((await (await fetch(`${sys.url}/v1/sessions?metadata.flowise_chat=${chat}`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as any).sessions;
    expect(await list('chat-a')).toHaveLength(1);
    expect(await list('chat-b')).toHaveLength(1);
    for (const chat of ['chat-a', 'chat-b']) {
      for (const s of await list(chat)) await fetch(`${sys.url}/v1/sessions/${s.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${KEY}` } });
    }
  });
});
