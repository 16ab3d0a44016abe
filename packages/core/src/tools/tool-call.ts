import { z } from 'zod';
import { Execution } from '../contract/schemas';
import { errMsg } from '../infra/err-msg';

/**
 * The `execute_python` LLM tool, independent of HTTP: its definition for OpenAI and Anthropic
 * function calling, reading a call in whichever shape a client forwards it, and the compact text
 * the model gets back. Pure: no I/O here (the API and the MCP server do the running).
 */

export const TOOL_NAME = 'execute_python';

export const TOOL_LIBRARIES = 'numpy, pandas, matplotlib (Japanese fonts installed; japanize_matplotlib works), scipy, openpyxl and the standard library';

/** The parameters as the model sees them; valid for OpenAI strict mode (every key required, null for "none"). */
export const ExecutePythonParameters = z.strictObject({
  code: z.string().describe('Python source to run, like one notebook cell. The value of a last bare expression is returned; print() anything else you need to see.'),
  session_id: z
    .string()
    .nullable()
    .describe('The session_id returned by an earlier execute_python call, to continue with its variables and files; null to start a new session.'),
});

export interface ToolDescriptionOptions {
  /** Per-call time limit, in ms. */
  timeoutMs: number;
  /** Idle time after which a session and its state are dropped, in seconds. */
  ttlSeconds?: number;
}

export function toolDescription(o: ToolDescriptionOptions): string {
  const secs = Math.round(o.timeoutMs / 1000);
  const idle = o.ttlSeconds ? ` A session idle for ${Math.round(o.ttlSeconds / 60)} minutes is deleted.` : '';
  return [
    'Run Python 3 code in a sandboxed, stateful interpreter (like a Jupyter notebook) and get its output.',
    `- State persists across calls in the same session: variables, imports and functions stay defined. Each result gives a session_id; pass it back as session_id to continue in that state, or null to start a new session.${idle}`,
    '- The value of a last bare expression is returned; use print() for anything else. Errors come back as a traceback: fix the code and call again.',
    '- matplotlib figures are captured automatically: call plt.show() or leave figures open. Each comes back as an image URL the user can see. Do not call savefig just to show a plot.',
    '- The working directory /work persists for the session: files the user uploaded appear there, and files you write there come back as download URLs.',
    `- Available: ${TOOL_LIBRARIES}. pip install is not available and there is no network access.`,
    `- Each call is stopped after ${secs} seconds; split long work into several calls.`,
  ].join('\n');
}

function parametersJsonSchema(): Record<string, unknown> {
  const { $schema: _drop, ...schema } = z.toJSONSchema(ExecutePythonParameters) as Record<string, unknown>;
  return schema;
}

export type ToolFormat = 'openai' | 'anthropic';
export const ToolFormat = z.enum(['openai', 'anthropic']);

export interface OpenAiToolDefinition {
  type: 'function';
  function: { name: string; description: string; strict: true; parameters: Record<string, unknown> };
}

export interface AnthropicToolDefinition {
  name: string;
  description: string;
  input_schema: Record<string, unknown>;
}

export function executePythonTool(format: 'openai', o: ToolDescriptionOptions): OpenAiToolDefinition;
export function executePythonTool(format: 'anthropic', o: ToolDescriptionOptions): AnthropicToolDefinition;
export function executePythonTool(format: ToolFormat, o: ToolDescriptionOptions): OpenAiToolDefinition | AnthropicToolDefinition;
export function executePythonTool(format: ToolFormat, o: ToolDescriptionOptions): OpenAiToolDefinition | AnthropicToolDefinition {
  const description = toolDescription(o);
  const schema = parametersJsonSchema();
  if (format === 'anthropic') return { name: TOOL_NAME, description, input_schema: schema };
  return { type: 'function', function: { name: TOOL_NAME, description, strict: true, parameters: schema } };
}

// ---------------------------------------------------------------------------------------------
// Reading a call

/** The shape a call came in: bare arguments, an OpenAI Chat `tool_call`, a Responses `function_call`, an Anthropic `tool_use`. */
export type ToolCallShape = 'arguments' | 'openai' | 'openai_responses' | 'anthropic';

export interface ToolArgs {
  code: string;
  sessionId: string | null;
}

export interface ToolInputError {
  code: 'malformed_arguments' | 'invalid_arguments' | 'unknown_tool' | 'session_not_found' | 'session_expired' | 'code_too_large';
  /** Written for the model: what was wrong and what to send instead. */
  message: string;
}

export type ParsedToolCall =
  | { ok: true; shape: ToolCallShape; toolCallId: string | null; args: ToolArgs }
  | { ok: false; shape: ToolCallShape; toolCallId: string | null; error: ToolInputError };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const typeName = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'string' ? 'a string' : `a ${typeof v}`);
const EXAMPLE = '{"code": "<python source>", "session_id": null}';

interface Unwrapped {
  shape: ToolCallShape;
  toolCallId: string | null;
  name: string | null;
  args: unknown;
}

function unwrap(body: unknown): Unwrapped {
  const str = (v: unknown) => (typeof v === 'string' && v ? v : null);
  if (isObject(body) && isObject(body.tool_call)) body = body.tool_call;
  if (isObject(body)) {
    if (body.type === 'tool_use' || (!('code' in body) && 'input' in body && 'name' in body)) {
      return { shape: 'anthropic', toolCallId: str(body.id), name: str(body.name) ?? '', args: body.input };
    }
    if (body.type === 'function_call' || (!('code' in body) && 'call_id' in body && 'arguments' in body)) {
      return { shape: 'openai_responses', toolCallId: str(body.call_id) ?? str(body.id), name: str(body.name) ?? '', args: body.arguments };
    }
    if (isObject(body.function) && !('code' in body)) {
      return { shape: 'openai', toolCallId: str(body.id), name: str(body.function.name) ?? '', args: body.function.arguments };
    }
  }
  return { shape: 'arguments', toolCallId: null, name: null, args: body };
}

/**
 * Reads a call in any of the shapes a client may forward. Every problem is a `ToolInputError`
 * whose message tells the model how to call again; nothing here throws.
 */
export function parseToolCall(body: unknown, toolName = TOOL_NAME): ParsedToolCall {
  const u = unwrap(body);
  const fail = (code: ToolInputError['code'], message: string): ParsedToolCall => ({
    ok: false,
    shape: u.shape,
    toolCallId: u.toolCallId,
    error: { code, message },
  });
  if (u.name !== null && u.name !== toolName) {
    return fail('unknown_tool', `Unknown tool "${u.name}". The only tool here is ${toolName}, with arguments ${EXAMPLE}.`);
  }
  let args = u.args;
  if (typeof args === 'string') {
    if (args.trim() === '') args = {};
    else {
      try {
        args = JSON.parse(args);
      } catch (err) {
        return fail(
          'malformed_arguments',
          `The arguments are not valid JSON (${errMsg(err)}). Call ${toolName} again with a JSON object like ${EXAMPLE}: the code is one JSON string, with newlines written as \\n and double quotes as \\".`,
        );
      }
    }
  }
  if (args === undefined || args === null) args = {};
  if (!isObject(args)) {
    return fail('invalid_arguments', `The arguments must be a JSON object like ${EXAMPLE}, not ${typeName(args)}.`);
  }
  if (!('code' in args) || args.code === undefined || args.code === null) {
    return fail('invalid_arguments', `Missing the required argument "code" (the Python source to run, as a string). Call again with ${EXAMPLE}.`);
  }
  if (typeof args.code !== 'string') {
    return fail('invalid_arguments', `"code" must be a string of Python source, not ${typeName(args.code)}. Call again with ${EXAMPLE}.`);
  }
  const sid = args.session_id ?? args.sessionId ?? null;
  if (sid !== null && typeof sid !== 'string') {
    return fail('invalid_arguments', `"session_id" must be a string returned by an earlier call, or null for a new session; got ${typeName(sid)}.`);
  }
  const sessionId = typeof sid === 'string' && sid.trim() ? sid.trim() : null;
  return { ok: true, shape: u.shape, toolCallId: u.toolCallId, args: { code: args.code, sessionId } };
}

/** The model-facing message for a session that cannot be used. */
export function sessionUnusableMessage(sessionId: string, code: 'session_not_found' | 'session_expired', detail?: string): string {
  const why = code === 'session_expired' ? `has ended${detail ? ` (${detail})` : ''}` : 'does not exist';
  return `Session ${sessionId} ${why}: its variables are gone. Call execute_python again with session_id null to start a new session, and re-run any setup code (imports, data loading) you need.`;
}

// ---------------------------------------------------------------------------------------------
// The text the model reads

const MARKER = (n: number, unit: string) => `… [sessionbox: ${n} ${unit} cut] …`;

/** A cut at `i` would split a surrogate pair (an emoji, say) into invalid halves. */
function isLowSurrogate(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return c >= 0xdc00 && c <= 0xdfff;
}

/**
 * Keeps the head and the tail of `text` within `max` characters, cutting the middle with a marker.
 * Whole lines are cut where that keeps most of the room; otherwise characters are.
 */
export function trimMiddle(text: string, max: number, headShare = 0.5): string {
  if (text.length <= max) return text;
  const room = Math.max(0, max - 44);
  const headRoom = Math.floor(room * headShare);
  const tailRoom = room - headRoom;
  const lines = text.split('\n');
  let h = 0;
  let usedHead = 0;
  while (h < lines.length && usedHead + lines[h].length + 1 <= headRoom) usedHead += lines[h++].length + 1;
  let t = 0;
  let usedTail = 0;
  while (t < lines.length - h && usedTail + lines[lines.length - 1 - t].length + 1 <= tailRoom) usedTail += lines[lines.length - 1 - t++].length + 1;
  const cutLines = lines.length - h - t;
  if (cutLines > 0 && usedHead + usedTail >= room * 0.6) {
    return [...lines.slice(0, h), MARKER(cutLines, cutLines === 1 ? 'line' : 'lines'), ...lines.slice(lines.length - t)].join('\n');
  }
  const headEnd = isLowSurrogate(text, headRoom) ? headRoom - 1 : headRoom;
  const tailStart = text.length - tailRoom + (isLowSurrogate(text, text.length - tailRoom) ? 1 : 0);
  const head = text.slice(0, headEnd);
  const tail = text.slice(Math.max(headEnd, tailStart));
  return `${head}${MARKER(text.length - head.length - tail.length, 'chars')}${tail}`;
}

/** Hands `budget` out to parts of different sizes: small ones whole, the rest an equal share each. */
export function shareBudget(sizes: number[], budget: number): number[] {
  const out = sizes.map(() => 0);
  let left = Math.max(0, budget);
  let open = sizes.map((_, i) => i).sort((a, b) => sizes[a] - sizes[b]);
  while (open.length) {
    const share = Math.floor(left / open.length);
    const i = open[0];
    if (sizes[i] <= share) {
      out[i] = sizes[i];
      left -= sizes[i];
      open = open.slice(1);
    } else {
      for (const j of open) out[j] = share;
      break;
    }
  }
  return out;
}

const CAUSES: Record<string, string> = {
  timeout: 'it ran past the time limit',
  oom: 'it ran out of memory',
  pids: 'it started too many processes or threads',
  output_cap: 'it printed far too much output',
  killed: 'the interpreter was killed',
  aborted: 'it was aborted',
  worker_lost: 'the worker running it stopped',
  session_terminated: 'the session ended',
};

export interface ToolTextOptions {
  /** Upper bound on the text length, in characters. */
  budget: number;
  sessionId: string;
  /** The session was made by this call (no earlier state). */
  sessionCreated?: boolean;
  /** At most this many figure and file lines each (the rest is counted). */
  maxListed?: number;
}

function humanSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

type ExecutionLike = Pick<
  z.infer<typeof Execution>,
  'status' | 'stdout' | 'stderr' | 'result' | 'error' | 'figures' | 'files' | 'timeoutMs' | 'restarted' | 'cause' | 'notes'
> & { restored?: boolean };

/**
 * What the model reads after a run: output, result, a trimmed traceback, figure and file URLs,
 * what happened to the interpreter, and the session_id to pass back. At most `budget` characters.
 */
export function buildToolText(ex: ExecutionLike, o: ToolTextOptions): string {
  const maxListed = o.maxListed ?? 10;
  const fixedTop: string[] = [];
  const fixedBottom: string[] = [];

  if (ex.status === 'timed_out' || ex.cause === 'timeout') {
    fixedTop.push(`[sessionbox: the run was stopped after ${Math.round(ex.timeoutMs / 1000)} s (time limit). Make the code faster or split the work into several calls.]`);
  } else if (ex.cause) {
    fixedTop.push(`[sessionbox: the run was stopped because ${CAUSES[ex.cause] ?? ex.cause}.]`);
  }
  if (ex.restarted) {
    fixedTop.push('[sessionbox: the Python interpreter restarted during this run: variables, imports and functions from earlier calls are gone (files in /work are kept). Re-run any setup code you need.]');
  }

  if (ex.restored) {
    fixedTop.push('[sessionbox: the session had hibernated while idle and was woken for this call: its variables, functions, imports and files were restored (notes name anything that was not).]');
  }

  const figs = ex.figures.slice(0, maxListed).map((f, i) => `figure ${i + 1} (${f.width}x${f.height} px, shown to the user): ${f.url}`);
  if (ex.figures.length > maxListed) figs.push(`… and ${ex.figures.length - maxListed} more figures`);
  const files = ex.files.slice(0, maxListed).map((f) => `file /work/${f.path} (${humanSize(f.size)}): ${f.url}`);
  if (ex.files.length > maxListed) files.push(`… and ${ex.files.length - maxListed} more files`);
  fixedBottom.push(...figs, ...files);
  for (const n of ex.notes.slice(0, maxListed)) fixedBottom.push(`note: ${n}`);
  fixedBottom.push(
    o.sessionCreated
      ? `session_id: ${o.sessionId} (a new session; pass it back as session_id to keep this state)`
      : `session_id: ${o.sessionId} (pass it back as session_id to keep this state)`,
  );

  const errorText = ex.error ? (ex.error.traceback.trim() ? ex.error.traceback : `${ex.error.name}: ${ex.error.value}`) : '';
  const parts: { label: string; body: string; headShare: number }[] = [
    { label: 'stdout:\n', body: ex.stdout, headShare: 0.5 },
    { label: 'stderr:\n', body: ex.stderr, headShare: 0.5 },
    { label: ex.result && !ex.result.includes('\n') ? 'result: ' : 'result:\n', body: ex.result ?? '', headShare: 0.6 },
    { label: 'error:\n', body: errorText, headShare: 0.3 },
  ].filter((p) => p.body.length > 0);
  for (const p of parts) p.body = p.body.replace(/\n+$/, '');

  if (!parts.length && ex.status === 'succeeded' && !figs.length && !files.length) {
    fixedTop.push('(no output: the code ran without printing anything. print() values or end with an expression to see them.)');
  }

  const fixed = [...fixedTop, ...fixedBottom].join('\n');
  const labels = parts.reduce((n, p) => n + p.label.length + 1, 0);
  const room = o.budget - fixed.length - labels - 1;
  const shares = shareBudget(
    parts.map((p) => p.body.length),
    Math.max(room, parts.length * 100),
  );
  const body = parts.map((p, i) => p.label + trimMiddle(p.body, Math.max(shares[i], 100), p.headShare));
  const text = [...fixedTop, ...body, ...fixedBottom].join('\n');
  // Only reached when the lists themselves are huge: keep the head (status) and the tail (session id).
  return text.length <= o.budget ? text : trimMiddle(text, o.budget, 0.4);
}

// ---------------------------------------------------------------------------------------------
// Replies in the shapes the clients send back to their model

export function openAiToolMessage(toolCallId: string, text: string) {
  return { role: 'tool' as const, tool_call_id: toolCallId, content: text };
}

export function openAiResponsesOutput(callId: string, text: string) {
  return { type: 'function_call_output' as const, call_id: callId, output: text };
}

export function anthropicToolResult(toolUseId: string, text: string, isError: boolean) {
  return { type: 'tool_result' as const, tool_use_id: toolUseId, content: text, is_error: isError };
}

// ---------------------------------------------------------------------------------------------
// The HTTP contract (validated by the route and documented in /openapi.json)

export const ToolsQuery = z.object({ format: ToolFormat.default('openai') }).passthrough();

export const ToolExecuteQuery = z
  .object({
    budget: z.coerce.number().int().min(200).max(1_000_000).optional().meta({ description: 'Character budget of `text` (default SESSIONBOX_TOOL_TEXT_BUDGET).' }),
  })
  .passthrough();

export const ToolExecuteRequest = z
  .object({
    code: z.string().meta({ description: 'Python source to run.' }),
    // not nullable here (null is accepted all the same): Dify's OpenAPI importer fails on `type: [string, null]`
    session_id: z.string().optional().meta({ description: 'Session to continue (the session_id of an earlier call); omit for a new session.' }),
  })
  .meta({
    id: 'ExecutePythonRequest',
    description:
      'The tool arguments. Also accepted: an OpenAI tool_call `{id, type:"function", function:{name, arguments}}` (or `{tool_call: …}`), a Responses API `function_call` item, or an Anthropic `tool_use` block.',
  });

export const ToolExecuteResponse = z
  .object({
    ok: z.boolean().meta({ description: 'The code ran to the end without an exception.' }),
    session_id: z.string().nullable().meta({ description: 'Pass back as session_id to continue in this state.' }),
    session_created: z.boolean(),
    tool_call_id: z.string().nullable().optional(),
    text: z.string().meta({ description: 'Compact result for the model (output, result, traceback, figure and file URLs, session_id).' }),
    error: z.object({ code: z.string(), message: z.string() }).optional().meta({ description: 'Why the call could not run (bad arguments, unknown session).' }),
    execution: Execution.nullable(),
    openai_message: z.object({ role: z.literal('tool'), tool_call_id: z.string(), content: z.string() }).optional(),
    openai_responses_item: z.object({ type: z.literal('function_call_output'), call_id: z.string(), output: z.string() }).optional(),
    anthropic_content: z
      .object({ type: z.literal('tool_result'), tool_use_id: z.string(), content: z.string(), is_error: z.boolean() })
      .optional(),
  })
  .meta({ id: 'ExecutePythonResult' });
export type ToolExecuteResponse = z.infer<typeof ToolExecuteResponse>;
