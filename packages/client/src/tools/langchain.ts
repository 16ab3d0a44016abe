import { tool } from '@langchain/core/tools';
import { z } from 'zod';
import { CODE_DESCRIPTION, ConversationSession, TOOL_DESCRIPTION, TOOL_NAME, type ConversationOptions } from './conversation';

/** A LangChain.js tool (`@langchain/core/tools`) running code in the conversation's session. */
export function sessionboxLangChainTool(conversation: ConversationSession | ConversationOptions) {
  const conv = conversation instanceof ConversationSession ? conversation : new ConversationSession(conversation);
  return tool(async ({ code }, config) => conv.run(code, config?.signal), {
    name: TOOL_NAME,
    description: TOOL_DESCRIPTION,
    schema: z.object({ code: z.string().describe(CODE_DESCRIPTION) }),
  });
}
