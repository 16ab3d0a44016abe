import { OpenAPIRegistry, OpenApiGeneratorV31, type ResponseConfig } from '@asteasolutions/zod-to-openapi';
import {
  CreateSessionBody,
  ErrorBody,
  ExecuteBody,
  Execution,
  ExecutionParams,
  QueuedExecution,
  Session,
  SessionIdParams,
  SessionList,
} from '@sessionbox/core';
import { z } from 'zod';
import { features, type Feature } from './routers';
import { WaitQuery } from './routes/executions';
import { DeleteSessionQuery, ListQuery } from './routes/sessions';
import { StreamMessage } from './sse';

type OpenApiDocument = ReturnType<OpenApiGeneratorV31['generateDocument']>;

const ERROR_TEXT: Record<number, string> = {
  400: 'Invalid request; `error.message` names the field (code `invalid_request`).',
  404: 'No such session, execution or figure (code `session_not_found`, `execution_not_found`, …).',
  410: 'The session expired or was terminated (code `session_expired` or `session_terminated`).',
  413: 'The body or the code is too large (code `payload_too_large`).',
  415: 'The body is not `application/json` (code `unsupported_media_type`).',
  429: 'Too many requests or sessions (code `rate_limited`); see `Retry-After`.',
  503: 'Redis, Docker or the queue does not answer (code `redis_unavailable`, `docker_unavailable`, …); retry shortly.',
};

/** Error responses of an operation, all with the one `Error` body. */
export function errorResponses(...statuses: number[]): Record<string, ResponseConfig> {
  return Object.fromEntries(
    statuses.map((s) => [String(s), { description: ERROR_TEXT[s] ?? 'Error.', content: { 'application/json': { schema: ErrorBody } } }]),
  );
}

const json = (schema: z.ZodType, description: string): ResponseConfig => ({ description, content: { 'application/json': { schema } } });

const SessionPath = z.object({ id: SessionIdParams.shape.id.meta({ description: 'Session id (from createSession).' }) });
const ExecutionPath = z.object({
  id: ExecutionParams.shape.id.meta({ description: 'Session id.' }),
  executionId: ExecutionParams.shape.executionId.meta({ description: 'Execution id (from executeCode).' }),
});
const FigurePath = z.object({
  id: ExecutionParams.shape.id.meta({ description: 'Session id.' }),
  figureId: z.uuid().meta({ description: 'Figure id, as in `Execution.figures[].id`.' }),
});
const ExecuteQuery = z.object({
  wait: WaitQuery.shape.wait.meta({
    description: '`true`: answer 200 with the finished Execution. Otherwise 202 with the queued id (poll getExecution or streamExecutionEvents).',
  }),
});
const SessionsQuery = z.object({
  status: ListQuery.shape.status.meta({ description: 'Only sessions in this state.' }),
  limit: z.number().int().min(1).max(500).optional().meta({ description: 'At most this many sessions (default: all); `nextCursor` then leads to the next page.' }),
  cursor: z.string().optional().meta({ description: 'The `nextCursor` of the previous page.' }),
});
const DeleteQuery = z.object({ keep: DeleteSessionQuery.shape.keep });
const DeletedKeepingFiles = z
  .object({
    id: z.uuid(),
    restorable: z.boolean(),
    restoreUntil: z.iso.datetime().optional(),
    files: z.number().int().optional(),
    archiveBytes: z.number().int().optional(),
  })
  .meta({ id: 'DeletedSession', description: 'With `keep=files`: whether the files were archived, and until when `restoreFrom` can bring them back.' });
const LastEventIdHeader = z.object({
  'last-event-id': z
    .string()
    .optional()
    .meta({ description: 'SSE id of the last event received; the stream resumes after it (browsers send it when reconnecting).' }),
});
const Health = z
  .object({ status: z.literal('ok'), checks: z.record(z.string(), z.string()) })
  .meta({ id: 'Health', description: 'Every dependency answered: `checks` maps `redis` and `docker:<host>` to `ok`.' });

const eventStream = {
  'text/event-stream': {
    schema: StreamMessage,
    example:
      'id: 1718000000000-0\nevent: started\ndata: {"executionId":"…","at":"…"}\n\n' +
      'id: 1718000000001-0\nevent: stdout\ndata: {"text":"hello\\n"}\n\n' +
      'id: 1718000000900-0\nevent: done\ndata: {"id":"…","status":"succeeded","stdout":"hello\\n",…}\n\n',
  },
};

function registerCorePaths(registry: OpenAPIRegistry) {
  registry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    description: 'API key sent as `Authorization: Bearer <key>` (required when the server has API keys configured).',
  });

  registry.registerPath({
    method: 'post',
    path: '/v1/sessions',
    operationId: 'createSession',
    tags: ['sessions'],
    summary: 'Create a Python session',
    description:
      'Starts a fresh, resource-limited container with a stateful Python interpreter (numpy, pandas, matplotlib). ' +
      'Variables, imports and files persist across executions until the session is deleted or idle longer than its TTL.',
    request: { body: { required: false, content: { 'application/json': { schema: CreateSessionBody } } } },
    responses: { 201: json(Session, 'The new session, ready to run code.'), ...errorResponses(400, 413, 415, 429, 503) },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/sessions',
    operationId: 'listSessions',
    tags: ['sessions'],
    summary: 'List sessions',
    description: 'Sessions of the caller, newest first. Filter by metadata with query parameters `metadata.<key>=<value>`.',
    request: { query: SessionsQuery },
    responses: { 200: json(SessionList, 'The sessions.'), ...errorResponses(400, 503) },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/sessions/{id}',
    operationId: 'getSession',
    tags: ['sessions'],
    summary: 'Get a session',
    description: 'The session and its state; reading it counts as activity and moves its expiry.',
    request: { params: SessionPath },
    responses: { 200: json(Session, 'The session.'), ...errorResponses(404, 410, 503) },
  });

  registry.registerPath({
    method: 'delete',
    path: '/v1/sessions/{id}',
    operationId: 'deleteSession',
    tags: ['sessions'],
    summary: 'Delete a session',
    description: 'Removes the container and everything in it (with `keep=files`, the working directory is archived first). Later requests for the session answer 410.',
    request: { params: SessionPath, query: DeleteQuery },
    responses: {
      204: { description: 'Deleted.' },
      200: json(DeletedKeepingFiles, 'Deleted with `keep=files`.'),
      ...errorResponses(400, 404, 410, 503),
    },
  });

  registry.registerPath({
    method: 'post',
    path: '/v1/sessions/{id}/executions',
    operationId: 'executeCode',
    tags: ['executions'],
    summary: 'Run Python code in a session',
    description:
      'Runs the code like a notebook cell in the session\'s interpreter (state persists between calls). ' +
      'With `wait=true` the answer is the finished Execution: stdout, stderr, the trailing expression\'s value (`result`), ' +
      'the error with its traceback, and figure URLs. With `Accept: text/event-stream` the run is streamed as Server-Sent Events ' +
      '(see streamExecutionEvents). Otherwise 202 with the execution id.',
    request: {
      params: SessionPath,
      query: ExecuteQuery,
      body: { required: true, content: { 'application/json': { schema: ExecuteBody } } },
    },
    responses: {
      200: {
        description: 'With `wait=true`: the finished Execution. With `Accept: text/event-stream`: the run as Server-Sent Events.',
        content: { 'application/json': { schema: Execution }, ...eventStream },
      },
      202: json(QueuedExecution, 'Queued; poll getExecution or stream streamExecutionEvents.'),
      ...errorResponses(400, 404, 410, 413, 415, 429, 503),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/sessions/{id}/executions/{executionId}',
    operationId: 'getExecution',
    tags: ['executions'],
    summary: 'Get an execution',
    description: 'The execution in its current state (`queued`, `running`, or final with its output).',
    request: { params: ExecutionPath },
    responses: { 200: json(Execution, 'The execution.'), ...errorResponses(404, 503) },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/sessions/{id}/executions/{executionId}/events',
    operationId: 'streamExecutionEvents',
    tags: ['executions'],
    summary: 'Stream an execution as Server-Sent Events',
    description:
      'Events `started`, `stdout`/`stderr` (chunks as printed), `figure` (one per figure, with its URL) and a final `done` ' +
      'whose data is the whole Execution. A client that connects late gets every event from the start; ' +
      'with `Last-Event-ID` it gets those after that id. A `: ping` comment comes every 15 s.',
    request: { params: ExecutionPath, headers: LastEventIdHeader },
    responses: { 200: { description: 'The event stream; it ends after `done`.', content: eventStream }, ...errorResponses(400, 404, 503) },
  });

  registry.registerPath({
    method: 'get',
    path: '/v1/sessions/{id}/figures/{figureId}',
    operationId: 'getFigure',
    tags: ['executions'],
    summary: 'Download a figure',
    description: 'The PNG of a matplotlib figure made by an execution (URL given in `Execution.figures[].url`).',
    request: { params: FigurePath },
    responses: {
      200: { description: 'The PNG image.', content: { 'image/png': { schema: { type: 'string', contentMediaType: 'image/png' } } } },
      ...errorResponses(404, 410, 503),
    },
  });

  registry.registerPath({
    method: 'get',
    path: '/healthz',
    operationId: 'getHealth',
    tags: ['operations'],
    summary: 'Health check',
    description: 'Pings Redis and every Docker engine. 503 (with `checks` naming what is down) when one does not answer.',
    security: [],
    responses: { 200: json(Health, 'Everything answers.'), ...errorResponses(503) },
  });
}

/**
 * `servers[0]`. Dify's custom-tool import (and its SSRF proxy) refuse localhost and private addresses,
 * so without SESSIONBOX_PUBLIC_URL the entry says how to set the address such an app reaches.
 */
export function openApiServer(url: string, fromPublicUrl: boolean): { url: string; description?: string } {
  if (fromPublicUrl) return { url };
  return {
    url,
    description:
      'The address this request came in on. Set SESSIONBOX_PUBLIC_URL (e.g. https://sessionbox.example.com) to the address your app ' +
      'reaches sessionbox at: Dify refuses localhost and private addresses in a custom tool unless its SSRF proxy allows them.',
  };
}

export interface OpenApiOptions {
  /** The `servers[0].url` of the document: `SESSIONBOX_PUBLIC_URL` or the request's base URL. */
  serverUrl: string;
  features?: Feature[];
}

/** The OpenAPI 3.1 document of the whole API, generated from the zod schemas that validate requests. */
export function buildOpenApiDocument(opts: OpenApiOptions): OpenApiDocument {
  const registry = new OpenAPIRegistry();
  registerCorePaths(registry);
  for (const f of opts.features ?? features) f.openapi?.(registry);
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'sessionbox',
      version: '1.0.0',
      description:
        'Self-hosted code interpreter: each session is a fresh, resource-limited container with a stateful Python. ' +
        'Create a session, run code in it (output, results, errors and figures come back), delete it when done.',
    },
    servers: [{ url: opts.serverUrl }],
    // `{}` keeps the key optional while a server runs without API keys.
    security: [{ bearerAuth: [] }, {}],
    tags: [
      { name: 'sessions', description: 'Create, inspect and delete Python sessions.' },
      { name: 'executions', description: 'Run code and read its output, live or afterwards.' },
      { name: 'operations', description: 'Health of the service.' },
    ],
  });
}
