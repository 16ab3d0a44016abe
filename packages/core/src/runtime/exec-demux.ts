import type { Writable } from 'node:stream';

/**
 * Splits the engine's multiplexed exec stream (8-byte header: stream type, 3 zero bytes, payload
 * size) into stdout and stderr. Unlike docker-modem's demuxStream it respects backpressure: while
 * stdout is full the connection is paused, so a process writing faster than its reader blocks in
 * the container instead of filling this process's memory.
 */
export function demuxWithBackpressure(src: NodeJS.ReadableStream, stdout: Writable, stderr: Writable): void {
  let header = Buffer.alloc(0);
  let target: Writable | null = null;
  let left = 0;
  let paused = false;
  const resume = () => {
    paused = false;
    src.resume();
  };
  src.on('data', (chunk: Buffer) => {
    let at = 0;
    while (at < chunk.length) {
      if (target) {
        const n = Math.min(left, chunk.length - at);
        const ok = target.write(chunk.subarray(at, at + n));
        at += n;
        left -= n;
        if (!ok && target === stdout && !paused) {
          paused = true;
          src.pause();
          stdout.once('drain', resume);
        }
        if (left === 0) target = null;
        continue;
      }
      const take = Math.min(8 - header.length, chunk.length - at);
      header = Buffer.concat([header, chunk.subarray(at, at + take)]);
      at += take;
      if (header.length < 8) continue;
      left = header.readUInt32BE(4);
      target = left === 0 ? null : header[0] === 2 ? stderr : stdout;
      header = Buffer.alloc(0);
    }
  });
}
