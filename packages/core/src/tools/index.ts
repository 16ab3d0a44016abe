export { decodePythonEscapes } from './python-escape';
export { TOOL_NAME, toolDescription, executePythonTool, parseToolCall, sessionUnusableMessage, trimMiddle, shareBudget, buildToolText, openAiToolMessage, openAiResponsesOutput, anthropicToolResult, ToolsQuery, ToolExecuteQuery, ToolExecuteRequest, ToolExecuteResponse } from './tool-call';
export type { OpenAiToolDefinition, AnthropicToolDefinition, ToolInputError, ParsedToolCall } from './tool-call';
