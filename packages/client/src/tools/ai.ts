import { tool } from 'ai';
import { z } from 'zod';
import { CODE_DESCRIPTION, ConversationSession, TOOL_DESCRIPTION, type ConversationOptions } from './conversation';

/**
 * A Vercel AI SDK tool (`ai`'s `tool()`) running code in the conversation's session; pass it as
 * `tools: { execute_python: sessionboxAiTool(conv) }`.
 */
export function sessionboxAiTool(conversation: ConversationSession | ConversationOptions) {
  const conv = conversation instanceof ConversationSession ? conversation : new ConversationSession(conversation);
  return tool({
    description: TOOL_DESCRIPTION,
    inputSchema: z.object({ code: z.string().describe(CODE_DESCRIPTION) }),
    execute: async ({ code }, { abortSignal }) => conv.run(code, abortSignal),
  });
}
