import { tool } from '@openai/agents';
import { z } from 'zod';
import { CODE_DESCRIPTION, ConversationSession, TOOL_DESCRIPTION, TOOL_NAME, type ConversationOptions } from './conversation';

/** An OpenAI Agents SDK function tool (`@openai/agents`' `tool()`) running code in the conversation's session. */
export function sessionboxAgentsTool(conversation: ConversationSession | ConversationOptions) {
  const conv = conversation instanceof ConversationSession ? conversation : new ConversationSession(conversation);
  return tool({
    name: TOOL_NAME,
    description: TOOL_DESCRIPTION,
    parameters: z.object({ code: z.string().describe(CODE_DESCRIPTION) }),
    execute: async ({ code }) => conv.run(code),
  });
}
