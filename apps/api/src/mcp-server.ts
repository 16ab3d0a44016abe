import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { TOOL_NAME, buildToolText, sessionUnusableMessage, toolDescription, type Caller } from '@sessionbox/core';
import { z } from 'zod';
import type { ApiContext } from './context';
import { toolDescriptionOptions } from './routes/tools';
import { ToolInputFailure, figureBytes, runForTool } from './tool-runs';

/** At most this many figures travel inline as images per call; all of them are linked in the text. */
const MAX_INLINE_FIGURES = 5;

export interface McpRequestScope {
  caller: Caller;
  /** Base URL for figure and file links. */
  base: string;
}

const errorResult = (text: string): CallToolResult => ({ content: [{ type: 'text', text: `Error: ${text}` }], isError: true });

/**
 * One MCP server per HTTP request (stateless Streamable HTTP): the state lives in sessionbox
 * sessions, which the model names by session_id, not in the MCP connection.
 */
export function createMcpServer(ctx: ApiContext, scope: McpRequestScope): McpServer {
  const server = new McpServer(
    { name: 'sessionbox', version: '0.1.0' },
    {
      instructions:
        'Stateful Python sandboxes. Call execute_python with session_id null to start; pass the returned session_id back to keep variables and files. close_session when done.',
    },
  );

  server.registerTool(
    TOOL_NAME,
    {
      title: 'Run Python',
      description: toolDescription(toolDescriptionOptions(ctx)),
      inputSchema: {
        code: z.string().describe('Python source to run, like one notebook cell.'),
        session_id: z
          .string()
          .nullable()
          .optional()
          .describe('session_id from an earlier call (or create_session) to continue in its state; omit or null for a new session.'),
      },
      annotations: { readOnlyHint: false, destructiveHint: false, openWorldHint: false },
    },
    async ({ code, session_id }, extra): Promise<CallToolResult> => {
      try {
        const out = await runForTool(ctx, {
          code,
          sessionId: session_id?.trim() || null,
          caller: scope.caller,
          base: scope.base,
          signal: extra.signal,
          metadata: { via: 'mcp' },
        });
        const text = buildToolText(out.execution, { budget: ctx.config.toolTextBudget, sessionId: out.session.id, sessionCreated: out.created });
        const images = await figureBytes(ctx, out.record, MAX_INLINE_FIGURES);
        return {
          content: [{ type: 'text', text }, ...images.map((png) => ({ type: 'image' as const, data: png.toString('base64'), mimeType: 'image/png' }))],
          isError: out.execution.status !== 'succeeded',
        };
      } catch (err) {
        if (err instanceof ToolInputFailure) return errorResult(err.toolError.message);
        throw err;
      }
    },
  );

  server.registerTool(
    'create_session',
    {
      title: 'Start a Python session',
      description: 'Starts a new, empty Python session and returns its session_id (execute_python also starts one when given no session_id).',
      inputSchema: {},
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    },
    async (): Promise<CallToolResult> => {
      const rec = await ctx.core.sessions.create({ metadata: { via: 'mcp' } }, scope.caller);
      return {
        content: [{ type: 'text', text: `session_id: ${rec.id} (idle timeout ${rec.ttlSeconds} s)` }],
        structuredContent: { session_id: rec.id, expires_at: new Date(rec.expiresAt).toISOString() },
      };
    },
  );

  server.registerTool(
    'close_session',
    {
      title: 'Close a Python session',
      description: 'Ends a session: its interpreter, variables and files are removed.',
      inputSchema: { session_id: z.string().describe('The session to close.') },
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    async ({ session_id }): Promise<CallToolResult> => {
      const id = session_id.trim();
      if (!z.uuid().safeParse(id).success) return errorResult(sessionUnusableMessage(id, 'session_not_found'));
      try {
        await ctx.core.sessions.delete(id, scope.caller, 'closed');
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'session_not_found') return errorResult(sessionUnusableMessage(id, 'session_not_found'));
        if (code === 'session_expired' || code === 'session_terminated') {
          return { content: [{ type: 'text', text: `Session ${id} had already ended.` }] };
        }
        throw err;
      }
      return { content: [{ type: 'text', text: `Session ${id} closed.` }] };
    },
  );

  return server;
}
