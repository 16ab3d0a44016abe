import { randomUUID } from 'node:crypto';

/** Jupyter kernel messaging protocol version spoken on /api/kernels/{id}/channels. */
export const PROTOCOL_VERSION = '5.3';

/** The binary WebSocket subprotocol of jupyter_server 2 (and @jupyterlab/services 7). */
export const V1_SUBPROTOCOL = 'v1.kernel.websocket.jupyter.org';

export type Channel = 'shell' | 'iopub' | 'stdin' | 'control';

export interface MessageHeader {
  msg_id: string;
  msg_type: string;
  username: string;
  session: string;
  date: string;
  version: string;
  [k: string]: unknown;
}

/** A message as it travels over the WebSocket (`msg_id`/`msg_type` repeat the header, as jupyter_server sends them). */
export interface KernelMessage {
  channel: Channel;
  header: MessageHeader;
  parent_header: Partial<MessageHeader>;
  metadata: Record<string, unknown>;
  content: Record<string, unknown>;
  msg_id?: string;
  msg_type?: string;
  buffers?: unknown[];
}

export class MalformedMessageError extends Error {}

/** A reply or broadcast whose `parent_header` is the request's header. */
export function makeMessage(
  channel: Channel,
  msgType: string,
  content: Record<string, unknown>,
  parent: Partial<MessageHeader>,
  session: string,
  metadata: Record<string, unknown> = {},
): KernelMessage {
  const header: MessageHeader = {
    msg_id: randomUUID(),
    msg_type: msgType,
    username: 'kernel',
    session,
    date: new Date().toISOString(),
    version: PROTOCOL_VERSION,
  };
  return { channel, header, parent_header: parent, metadata, content, msg_id: header.msg_id, msg_type: msgType, buffers: [] };
}

const CHANNELS = new Set<Channel>(['shell', 'iopub', 'stdin', 'control']);

function checked(raw: Record<string, unknown>): KernelMessage {
  const header = raw.header as MessageHeader | undefined;
  if (!header || typeof header !== 'object' || typeof header.msg_type !== 'string' || typeof header.msg_id !== 'string') {
    throw new MalformedMessageError('a message needs a header with msg_id and msg_type');
  }
  const channel = (raw.channel ?? 'shell') as Channel;
  if (!CHANNELS.has(channel)) throw new MalformedMessageError(`unknown channel ${String(raw.channel)}`);
  return {
    channel,
    header,
    parent_header: (raw.parent_header as Partial<MessageHeader>) ?? {},
    metadata: (raw.metadata as Record<string, unknown>) ?? {},
    content: (raw.content as Record<string, unknown>) ?? {},
  };
}

/** The legacy protocol: one JSON text frame per message, `channel` inside it. */
export function parseLegacy(text: string): KernelMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new MalformedMessageError(`not JSON: ${(err as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new MalformedMessageError('a message is a JSON object');
  return checked(raw as Record<string, unknown>);
}

export function serializeLegacy(msg: KernelMessage): string {
  return JSON.stringify(msg);
}

/**
 * `v1.kernel.websocket.jupyter.org`: a little-endian u64 count of offsets, the offsets (u64 each,
 * from the start of the frame), then channel, header, parent_header, metadata, content and buffers.
 */
export function parseV1(frame: Buffer): KernelMessage {
  if (frame.length < 8) throw new MalformedMessageError('v1 frame shorter than its offset count');
  const n = Number(frame.readBigUInt64LE(0));
  if (n < 6 || 8 * (n + 1) > frame.length) throw new MalformedMessageError(`v1 frame with ${n} offsets`);
  const offsets: number[] = [];
  for (let i = 0; i < n; i++) offsets.push(Number(frame.readBigUInt64LE(8 * (i + 1))));
  for (let i = 1; i < n; i++) {
    if (offsets[i] < offsets[i - 1] || offsets[i] > frame.length) throw new MalformedMessageError('v1 frame offsets out of order');
  }
  const part = (i: number) => frame.subarray(offsets[i], offsets[i + 1]).toString('utf8');
  try {
    return checked({
      channel: part(0),
      header: JSON.parse(part(1)),
      parent_header: JSON.parse(part(2)),
      metadata: JSON.parse(part(3)),
      content: JSON.parse(part(4)),
    });
  } catch (err) {
    if (err instanceof MalformedMessageError) throw err;
    throw new MalformedMessageError(`v1 frame part is not JSON: ${(err as Error).message}`);
  }
}

export function serializeV1(msg: KernelMessage): Buffer {
  const parts = [msg.channel, msg.header, msg.parent_header ?? {}, msg.metadata, msg.content].map((p, i) =>
    Buffer.from(i === 0 ? (p as string) : JSON.stringify(p), 'utf8'),
  );
  const count = parts.length + 1; // the last offset marks the end
  const head = Buffer.alloc(8 * (count + 1));
  head.writeBigUInt64LE(BigInt(count), 0);
  let at = head.length;
  for (let i = 0; i < count; i++) {
    head.writeBigUInt64LE(BigInt(at), 8 * (i + 1));
    if (i < parts.length) at += parts[i].length;
  }
  return Buffer.concat([head, ...parts]);
}
