import { deserialize, serialize } from '@jupyterlab/services/lib/kernel/serialize';
import {
  MalformedMessageError,
  V1_SUBPROTOCOL,
  makeMessage,
  parseLegacy,
  parseV1,
  serializeV1,
} from '../apps/api/src/jupyter/kernel-message';

// Pure logic: our wire format against @jupyterlab/services' own (de)serializer.
describe('kernel message wire formats', () => {
  const parent = { msg_id: 'req-1', msg_type: 'execute_request', username: 'u', session: 's', date: '', version: '5.3' };

  test('v1.kernel.websocket.jupyter.org: what we send, @jupyterlab/services reads', () => {
    const msg = makeMessage('iopub', 'stream', { name: 'stdout', text: 'héllo 日本\n' }, parent, 'kernel-session');
    const frame = serializeV1(msg);
    // jupyter_server's layout: 6 offsets (channel, header, parent_header, metadata, content, end), the last one the frame's end.
    expect(frame.readBigUInt64LE(0)).toBe(6n);
    expect(Number(frame.readBigUInt64LE(8))).toBe(8 * 7);
    expect(Number(frame.readBigUInt64LE(8 * 6))).toBe(frame.length);
    const read = deserialize(frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength) as ArrayBuffer, V1_SUBPROTOCOL) as any;
    expect(read).toMatchObject({ channel: 'iopub', header: msg.header, parent_header: parent, metadata: {}, content: { name: 'stdout', text: 'héllo 日本\n' } });
  });

  test('v1: what @jupyterlab/services sends, we read', () => {
    const sent = { channel: 'shell', header: parent, parent_header: {}, metadata: { a: 1 }, content: { code: 'print("é")' }, buffers: [] };
    const frame = Buffer.from(serialize(sent as any, V1_SUBPROTOCOL) as ArrayBuffer);
    expect(parseV1(frame)).toEqual({ channel: 'shell', header: parent, parent_header: {}, metadata: { a: 1 }, content: { code: 'print("é")' } });
  });

  test('legacy JSON: channel inside; malformed frames are refused with MalformedMessageError', () => {
    expect(parseLegacy(JSON.stringify({ channel: 'control', header: parent, content: {} })).channel).toBe('control');
    expect(() => parseLegacy('not json')).toThrow(MalformedMessageError);
    expect(() => parseLegacy(JSON.stringify({ channel: 'shell', header: { msg_type: 'x' } }))).toThrow(MalformedMessageError);
    expect(() => parseLegacy(JSON.stringify({ channel: 'nope', header: parent }))).toThrow(MalformedMessageError);
    expect(() => parseV1(Buffer.alloc(4))).toThrow(MalformedMessageError);
    const bad = Buffer.alloc(16);
    bad.writeBigUInt64LE(1000n, 0);
    expect(() => parseV1(bad)).toThrow(MalformedMessageError);
  });
});
