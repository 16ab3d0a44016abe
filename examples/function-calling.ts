/**
 * An LLM tool-calling loop with sessionbox as the Python tool, against any OpenAI-compatible
 * chat endpoint (OpenAI, vLLM, Ollama, …):
 *
 *   OPENAI_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_API_KEY=ollama OPENAI_MODEL=qwen2.5:14b \
 *   SESSIONBOX_URL=http://127.0.0.1:8000 npx tsx examples/function-calling.ts "What is the 20th Fibonacci number?"
 *
 * The tool definition comes from `GET /v1/tools?format=openai`; each tool call is forwarded as is to
 * `POST /v1/tools/execute_python`, whose `openai_message` goes straight back to the model.
 */
import { Command } from 'commander';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { SessionboxClient } from '@sessionbox/client';

export interface ConversationOptions {
  prompt: string;
  sessionboxUrl: string;
  sessionboxApiKey?: string;
  /** e.g. https://api.openai.com/v1, http://127.0.0.1:11434/v1 (Ollama), http://host:8000/v1 (vLLM). */
  openaiBaseUrl: string;
  openaiApiKey: string;
  model: string;
  system?: string;
  /** Model round trips before giving up (default 8). */
  maxTurns?: number;
  /** Keep the sessions the model made (default: they are deleted at the end). */
  keepSessions?: boolean;
  /** Called with every message added to the conversation, for logging. */
  onMessage?: (m: ChatCompletionMessageParam) => void;
}

export interface ConversationResult {
  /** The model's final answer. */
  text: string;
  messages: ChatCompletionMessageParam[];
  toolCalls: number;
  /** Sessions the tool calls ran in (deleted unless `keepSessions`). */
  sessionIds: string[];
}

const SYSTEM =
  'You can run Python with the execute_python tool. Use it for any computation or data work instead of guessing, ' +
  'then answer from what it printed.';

export async function runConversation(o: ConversationOptions): Promise<ConversationResult> {
  const sandbox = new SessionboxClient({ baseUrl: o.sessionboxUrl, apiKey: o.sessionboxApiKey });
  const llm = new OpenAI({ baseURL: o.openaiBaseUrl, apiKey: o.openaiApiKey });
  const tools = await sandbox.listTools('openai');
  const messages: ChatCompletionMessageParam[] = [];
  const add = (m: ChatCompletionMessageParam) => {
    messages.push(m);
    o.onMessage?.(m);
  };
  const sessions = new Set<string>();
  let toolCalls = 0;
  add({ role: 'system', content: o.system ?? SYSTEM });
  add({ role: 'user', content: o.prompt });
  try {
    for (let turn = 0; turn < (o.maxTurns ?? 8); turn++) {
      const completion = await llm.chat.completions.create({ model: o.model, messages, tools });
      const reply = completion.choices[0].message;
      add(reply);
      if (!reply.tool_calls?.length) {
        return { text: reply.content ?? '', messages, toolCalls, sessionIds: [...sessions] };
      }
      for (const call of reply.tool_calls) {
        toolCalls++;
        // The server reads the call (and the session_id the model chose) and answers with the tool message.
        const result = await sandbox.callTool({ tool_call: call });
        if (result.session_id && result.session_created) sessions.add(result.session_id);
        add(result.openai_message ?? { role: 'tool', tool_call_id: call.id, content: result.text });
      }
    }
    throw new Error(`no final answer after ${o.maxTurns ?? 8} model turns`);
  } finally {
    if (!o.keepSessions) await Promise.all([...sessions].map((id) => sandbox.deleteSession(id).catch(() => undefined)));
  }
}

async function main() {
  const program = new Command()
    .name('function-calling')
    .description('Ask a model a question it may answer by running Python in sessionbox.')
    .argument('<prompt...>', 'the question')
    .option('--model <name>', 'model name', process.env.OPENAI_MODEL ?? 'gpt-4o-mini')
    .option('--sessionbox <url>', 'sessionbox base URL', process.env.SESSIONBOX_URL ?? 'http://127.0.0.1:8000')
    .parse();
  const opts = program.opts<{ model: string; sessionbox: string }>();
  const result = await runConversation({
    prompt: program.args.join(' '),
    sessionboxUrl: opts.sessionbox,
    sessionboxApiKey: process.env.SESSIONBOX_API_KEY,
    openaiBaseUrl: process.env.OPENAI_BASE_URL ?? 'https://api.openai.com/v1',
    openaiApiKey: process.env.OPENAI_API_KEY ?? 'none',
    model: opts.model,
    onMessage: (m) => {
      if (m.role === 'tool') console.error(`[tool] ${String(m.content).split('\n').join('\n       ')}`);
      else if (m.role === 'assistant' && 'tool_calls' in m && m.tool_calls?.length) {
        for (const c of m.tool_calls) if (c.type === 'function') console.error(`[call] ${c.function.arguments}`);
      }
    },
  });
  console.log(result.text);
}

if (require.main === module) {
  main().catch((err) => {
    const cause = (err as { cause?: { message?: string } })?.cause?.message;
    console.error(err instanceof Error ? `${err.message}${cause ? ` (${cause})` : ''}` : err);
    process.exit(1);
  });
}
