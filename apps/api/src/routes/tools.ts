import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { Router } from 'express';
import {
  ErrorBody,
  TOOL_NAME,
  ToolExecuteQuery,
  ToolExecuteRequest,
  ToolExecuteResponse,
  ToolsQuery,
  anthropicToolResult,
  buildToolText,
  executePythonTool,
  openAiResponsesOutput,
  openAiToolMessage,
  parseToolCall,
  type ParsedToolCall,
  type ToolInputError,
} from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { baseUrl, caller, parse, requireJson } from '../http';
import { ToolInputFailure, defaultTimeoutMs, runForTool } from '../tool-runs';

export function toolDescriptionOptions(ctx: ApiContext) {
  return { timeoutMs: defaultTimeoutMs(ctx), ttlSeconds: ctx.config.defaultTtlSeconds };
}

type Reply = z.infer<typeof ToolExecuteResponse>;

/** Adds the ready-made message for the client's own API, when the call came in its shape. */
function withClientMessages(call: ParsedToolCall, reply: Reply): Reply {
  const id = call.toolCallId;
  if (!id) return reply;
  if (call.shape === 'openai') reply.openai_message = openAiToolMessage(id, reply.text);
  if (call.shape === 'openai_responses') reply.openai_responses_item = openAiResponsesOutput(id, reply.text);
  if (call.shape === 'anthropic') reply.anthropic_content = anthropicToolResult(id, reply.text, !reply.ok);
  return reply;
}

function inputErrorReply(call: ParsedToolCall, error: ToolInputError, sessionId: string | null): Reply {
  return withClientMessages(call, {
    ok: false,
    session_id: sessionId,
    session_created: false,
    tool_call_id: call.toolCallId,
    text: `Error: ${error.message}`,
    error,
    execution: null,
  });
}

export function toolsRouter(ctx: ApiContext): Router {
  const r = Router();

  r.get('/v1/tools', (req, res) => {
    const q = parse(ToolsQuery, req.query, 'query');
    res.json({ format: q.format, tools: [executePythonTool(q.format, toolDescriptionOptions(ctx))] });
  });

  r.post(`/v1/tools/${TOOL_NAME}`, requireJson, async (req, res) => {
    const q = parse(ToolExecuteQuery, req.query, 'query');
    const budget = q.budget ?? ctx.config.toolTextBudget;
    const call = parseToolCall(req.body);
    if (!call.ok) return void res.json(inputErrorReply(call, call.error, null));

    const aborter = new AbortController();
    res.on('close', () => aborter.abort());
    const base = baseUrl(req, ctx.config.publicUrl);
    try {
      const out = await runForTool(ctx, {
        code: call.args.code,
        sessionId: call.args.sessionId,
        caller: caller(req),
        base,
        signal: aborter.signal,
        metadata: { via: 'tools' },
      });
      if (aborter.signal.aborted) return;
      let text = buildToolText(out.execution, { budget, sessionId: out.session.id, sessionCreated: out.created });
      if (!out.finished) {
        text = `[sessionbox: the run is still going after the wait ended; its state is ${out.execution.status}.]\n${text}`;
      }
      res.json(
        withClientMessages(call, {
          ok: out.execution.status === 'succeeded',
          session_id: out.session.id,
          session_created: out.created,
          tool_call_id: call.toolCallId,
          text,
          execution: out.execution,
        }),
      );
    } catch (err) {
      if (!(err instanceof ToolInputFailure)) throw err;
      res.json(inputErrorReply(call, err.toolError, call.args.sessionId));
    }
  });

  return r;
}

export function registerToolsPaths(registry: OpenAPIRegistry) {
  registry.registerPath({
    method: 'get',
    path: '/v1/tools',
    operationId: 'listTools',
    tags: ['tools'],
    summary: 'The execute_python tool definition for LLM function calling',
    description: 'Pass `tools` straight to OpenAI (`strict: true`) or Anthropic (`format=anthropic`) chat APIs.',
    request: { query: z.object({ format: ToolsQuery.shape.format.meta({ description: '`openai` (default) or `anthropic`.' }) }) },
    responses: {
      200: {
        description: 'The tool definitions.',
        content: { 'application/json': { schema: z.object({ format: z.enum(['openai', 'anthropic']), tools: z.array(z.record(z.string(), z.unknown())) }) } },
      },
      400: { description: 'Unknown format.', content: { 'application/json': { schema: ErrorBody } } },
    },
  });
  registry.registerPath({
    method: 'post',
    path: `/v1/tools/${TOOL_NAME}`,
    // snake_case on purpose: importers such as Dify name the tool after the operationId
    operationId: TOOL_NAME,
    tags: ['tools'],
    summary: 'Run Python code in a stateful sandbox (LLM tool)',
    description:
      'Runs Python in a stateful session: variables, imports and files in /work persist across calls that pass the same session_id (omit it to start a new session; the answer gives its id). ' +
      'matplotlib figures come back as image URLs. numpy, pandas, matplotlib (Japanese fonts), scipy and openpyxl are installed; there is no network. ' +
      'Problems with the arguments (missing code, bad JSON, unknown or expired session) answer 200 with ok=false and a `text` telling the model what to do.',
    request: {
      query: z.object({ budget: ToolExecuteQuery.shape.budget }),
      body: { required: true, content: { 'application/json': { schema: ToolExecuteRequest } } },
    },
    responses: {
      200: { description: 'The result, with `text` ready for the model.', content: { 'application/json': { schema: ToolExecuteResponse } } },
      415: { description: 'The body is not JSON.', content: { 'application/json': { schema: ErrorBody } } },
      503: { description: 'Docker, Redis or capacity problem; retry shortly.', content: { 'application/json': { schema: ErrorBody } } },
    },
  });
}
