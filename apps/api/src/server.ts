import { ConnectionCaps } from './connection-caps';
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  ExecutionEvents,
  ExecutionQueues,
  ExecutionService,
  createCore,
  createLogger,
  createMetrics,
  createRedis,
  createRuntimes,
  closeRedis,
  warmClaimer,
  withTimeout,
  errMsg,
  CloseSteps,
  type Config,
} from '@sessionbox/core';
import type { Logger } from 'pino';
import { createApp } from './app';
import type { RouterFactory } from './context';
import type { ApiContext } from './context';
import { RequestDrain } from './request-drain';
import { attachKernelSockets } from './jupyter/kernel-sockets';
import { extraRouters } from './routers';

export interface RunningApi {
  url: string;
  server: Server;
  ctx: ApiContext;
  /**
   * Stops accepting (new requests get 503 `shutting_down`), lets requests under way finish
   * (`?wait=true` runs, event streams; at most SESSIONBOX_SHUTDOWN_GRACE_MS), then closes the
   * connections and Redis. Each step runs even if an earlier one failed; every call returns the
   * first call's promise.
   */
  close(): Promise<void>;
}

export async function startApi(config: Config, opts: { logger?: Logger; extra?: RouterFactory[] } = {}): Promise<RunningApi> {
  const logger = opts.logger ?? createLogger('sessionbox-api', config.logLevel);
  const metrics = createMetrics({ defaultMetrics: true });
  const redis = createRedis(config.redisUrl);
  const runtimes = createRuntimes(config);
  // Default-limit sessions take a warm container when a worker keeps a pool (SESSIONBOX_POOL_SIZE).
  const claimWarm = warmClaimer({
    redis,
    runtimes,
    namespace: config.namespace,
    image: config.image,
    maxAgeMs: config.poolMaxAgeSeconds * 1000,
    demandWindowMs: config.poolMemoryMb > 0 ? config.poolDemandWindowSeconds * 1000 : null,
    logger,
  });
  const core = createCore(config, { logger, metrics, redis, runtimes, files: true, sessionHooks: { claimWarm } });
  const files = core.files!;
  const subscriber = createRedis(config.redisUrl, { forBullmq: true });
  const events = new ExecutionEvents(subscriber, config.namespace);
  const queues = new ExecutionQueues(createRedis(config.redisUrl, { forBullmq: true }), config.namespace);
  const executions = new ExecutionService({
    sessions: core.sessions,
    executions: core.executionStore,
    queues,
    events,
    maxCodeBytes: config.maxCodeBytes,
    maxTimeoutMs: config.maxTimeoutMs,
  });
  const connections = new ConnectionCaps(core.sessions.opts.limits ?? null);
  const ctx: ApiContext = { config, core, executions, events, queues, logger, metrics, files, connections };
  void events.start().catch((err) => logger.warn({ err: errMsg(err) }, 'event subscription failed; will retry'));
  const drain = new RequestDrain();
  const app = createApp(ctx, [...extraRouters, ...(opts.extra ?? [])], drain.middleware);
  // Without API keys anyone who can connect owns every session: stay on loopback unless told otherwise.
  const open = (config.apiKeys?.length ?? 0) === 0 && !config.adminKey;
  const host = config.host || (open ? '127.0.0.1' : '0.0.0.0');
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(config.port, host, () => resolve(s));
    s.once('error', reject);
  });
  server.keepAliveTimeout = 65_000;
  const kernelSockets = attachKernelSockets(ctx, server);
  // A request Node cannot parse (bad method, header, framing) gets the API's error shape too, not a bare status line.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // As Node's own handler: answer only while nothing has been written on this connection.
    if (err.code === 'ECONNRESET' || !socket.writable || (socket as Socket).bytesWritten > 0) return void socket.destroy();
    const [status, reason, code] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'Request Header Fields Too Large', 'headers_too_large']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'Request Timeout', 'request_timeout']
          : [400, 'Bad Request', 'bad_request'];
    const body = JSON.stringify({ error: { code, message: `malformed HTTP request (${err.code ?? 'parse error'})` } });
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  // What the first creates would otherwise pay for together: the engine's memory (one call per host) and each host's queue connection.
  void Promise.all(
    config.dockerHosts.map((h) => Promise.all([core.sessions.opts.hostBudget?.hostMemoryMb(h.name), queues.forHost(h.name).waitUntilReady()])),
  ).catch((err) => logger.warn({ err: errMsg(err) }, 'warm-up before the first session failed; the first creates pay for it'));
  const addr = server.address() as AddressInfo;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`;
  logger.info({ url }, 'sessionbox api listening');
  if (open) {
    logger.warn(
      { host, apiKeys: 0 },
      config.host
        ? `NO API KEYS CONFIGURED: the API is unauthenticated and listens on ${host} because SESSIONBOX_HOST says so; set SESSIONBOX_API_KEYS`
        : `NO API KEYS CONFIGURED: the API is unauthenticated, so it listens on ${host} (localhost) only; set SESSIONBOX_API_KEYS to serve other machines`,
    );
  }
  const serverClosed = new Promise<void>((resolve) => server.once('close', resolve));
  const steps = new CloseSteps(logger)
    .add('kernel sockets', () => kernelSockets.close())
    .add('stop accepting', () => {
      server.close();
      server.closeIdleConnections();
    })
    .add('requests under way', async () => {
      const waiting = drain.begin();
      if (drain.inFlight > 0) logger.info({ requests: drain.inFlight, graceMs: config.shutdownGraceMs }, 'letting requests under way finish');
      await withTimeout(waiting, config.shutdownGraceMs, 'requests under way').catch(() =>
        logger.warn({ requests: drain.inFlight }, 'requests still open at the end of the grace are cut'),
      );
    })
    .add('connections', () => {
      server.closeAllConnections();
      return serverClosed;
    })
    .add('queues', () => queues.close())
    .add('events', () => events.close())
    .add('files', () => files.close())
    .add('redis', () => closeRedis(core.redis));
  return {
    url,
    server,
    ctx,
    close: () => steps.close(),
  };
}
