import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { ApiKeyring, SessionboxError, UnauthorizedError, isSessionboxError, type Caller } from '@sessionbox/core';
import { WebSocketServer } from 'ws';
import { presentedKey } from '../auth';
import type { ApiContext } from '../context';
import { jupyterKernels } from './jupyter-kernels';
import { KernelConnection } from './kernel-connection';
import { V1_SUBPROTOCOL } from './kernel-message';

const CHANNELS_PATH = /^\/api\/kernels\/([^/?]+)\/channels(?:\?.*)?$/;

/** Largest message a client may send (an execute_request carries the code; JSON escaping can grow it). */
function maxPayload(ctx: ApiContext) {
  return ctx.config.maxCodeBytes * 6 + 64 * 1024;
}

export interface KernelSockets {
  /** Closes every kernel WebSocket (open ones would otherwise hold the HTTP server's close). */
  close(): void;
}

/**
 * Serves `GET /api/kernels/{id}/channels` (WebSocket) on the API's HTTP server, with the same keys
 * and tenancy as the REST API. The binary `v1.kernel.websocket.jupyter.org` subprotocol is chosen
 * when the client offers it; otherwise legacy JSON text frames.
 */
export function attachKernelSockets(ctx: ApiContext, server: Server): KernelSockets {
  const kernels = jupyterKernels(ctx);
  const ring = new ApiKeyring(ctx.config.apiKeys ?? [], ctx.config.adminKey ?? null);
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: maxPayload(ctx),
    handleProtocols: (offered) => (offered.has(V1_SUBPROTOCOL) ? V1_SUBPROTOCOL : false),
  });

  const refuse = (socket: Duplex, err: SessionboxError) => {
    const body = JSON.stringify(err.toJSON());
    const auth = err.status === 401 ? 'WWW-Authenticate: Bearer realm="sessionbox"\r\n' : '';
    socket.end(
      `HTTP/1.1 ${err.status} ${err.code}\r\nContent-Type: application/json\r\n${auth}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  };

  const authenticate = (req: IncomingMessage): Caller => {
    if (ring.open) return { owner: 'default' };
    const key = presentedKey(req);
    const caller = key ? ring.lookup(key) : null;
    if (!caller) throw new UnauthorizedError(key ? 'the API key is not valid' : 'an API key is required: send ?token=<key> or "Authorization: token <key>"');
    return caller;
  };

  const onUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const m = CHANNELS_PATH.exec(req.url ?? '');
    if (!m) {
      // Only this hook serves upgrades today; anything else is an unknown route.
      if (server.listenerCount('upgrade') === 1) refuse(socket, new SessionboxError('route_not_found', `no WebSocket at ${req.url}`, 404));
      return;
    }
    socket.on('error', () => socket.destroy());
    try {
      const caller = authenticate(req);
      const id = decodeURIComponent(m[1]);
      await kernels.get(id, caller); // 404 unknown or another tenant's, 410 ended
      wss.handleUpgrade(req, socket, head, (ws) => new KernelConnection(ctx, kernels, ws, id, caller).start());
    } catch (err) {
      if (isSessionboxError(err)) return refuse(socket, err);
      ctx.logger.error({ err: (err as Error).message }, 'kernel websocket upgrade failed');
      refuse(socket, new SessionboxError('internal_error', 'internal error', 500));
    }
  };
  const listener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void onUpgrade(req, socket, head);
  server.on('upgrade', listener);

  return {
    close() {
      server.off('upgrade', listener);
      kernels.closeAll();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  };
}
