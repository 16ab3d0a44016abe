import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { Router, type Response } from 'express';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { baseUrl, caller } from '../http';
import { createMcpServer } from '../mcp-server';

function methodNotAllowed(res: Response) {
  res
    .status(405)
    .setHeader('Allow', 'POST')
    .json({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed: this MCP server is stateless; POST JSON-RPC messages to /mcp.' }, id: null });
}

/** Model Context Protocol over Streamable HTTP, stateless: a fresh server and transport per request. */
export function mcpRouter(ctx: ApiContext): Router {
  const r = Router();

  r.post('/mcp', async (req, res) => {
    const server = createMcpServer(ctx, { caller: caller(req), base: baseUrl(req, ctx.config.publicUrl) });
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  r.get('/mcp', (_req, res) => methodNotAllowed(res));
  r.delete('/mcp', (_req, res) => methodNotAllowed(res));

  return r;
}

const JsonRpcMessage = z
  .object({ jsonrpc: z.literal('2.0'), id: z.union([z.string(), z.number()]).optional(), method: z.string(), params: z.record(z.string(), z.unknown()).optional() })
  .meta({ id: 'JsonRpcRequest' });

export function registerMcpPaths(registry: OpenAPIRegistry) {
  registry.registerPath({
    method: 'post',
    path: '/mcp',
    operationId: 'mcp',
    tags: ['tools'],
    summary: 'Model Context Protocol server (Streamable HTTP, stateless)',
    description:
      'For MCP clients, not for direct calls. Tools: `execute_python` (code, session_id?), `create_session`, `close_session`. Figures come back as `image` content (PNG, base64) next to the text. ' +
      'Send `Accept: application/json, text/event-stream` (otherwise 406, answered by the MCP SDK as a JSON-RPC error).',
    request: { body: { required: true, content: { 'application/json': { schema: JsonRpcMessage } } } },
    responses: {
      200: {
        description: 'JSON-RPC response, as an SSE stream (`text/event-stream`) or JSON.',
        content: { 'text/event-stream': { schema: z.string() }, 'application/json': { schema: z.record(z.string(), z.unknown()) } },
      },
      202: { description: 'A notification or response was accepted.' },
    },
  });
}
