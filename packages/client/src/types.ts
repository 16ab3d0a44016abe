import type { z } from 'zod';
// Type-only: the shapes come from the server's own zod schemas, and nothing of the server is loaded at run time.
import type {
  CreateSessionBody,
  Execution,
  ExecutionError,
  Figure,
  Limits,
  OutputFile,
  Session,
  SessionStatus,
  AnthropicToolDefinition,
  OpenAiToolDefinition,
  ToolExecuteResponse,
} from '@sessionbox/core';

export type { Execution, ExecutionError, Figure, Limits, OutputFile, Session, SessionStatus };
export type { AnthropicToolDefinition, OpenAiToolDefinition, ToolExecuteResponse };

/** What `POST /v1/tools/execute_python` takes: the model's tool call as it came, or the bare arguments. */
export type ToolCallBody = { tool_call: unknown } | { code: string; session_id?: string | null } | Record<string, unknown>;
export type CreateSessionRequest = z.input<typeof CreateSessionBody>;
/** A file in a session's working directory. */
export interface SessionFile {
  path: string;
  size: number;
  mimeType?: string;
  url: string;
  [k: string]: unknown;
}

export interface QueuedExecution {
  id: string;
  sessionId: string;
  status: 'queued';
}

/** One event of a streamed execution; `id` is the SSE id to resume after (`lastEventId`). */
export type StreamEvent =
  | { type: 'started'; id: string; executionId: string; at: string }
  | { type: 'stdout' | 'stderr'; id: string; text: string }
  | { type: 'figure'; id: string; figure: Figure }
  | { type: 'done'; id: string; execution: Execution };
