import { crc32 } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface PngInfo {
  width: number;
  height: number;
}

/**
 * Checks a whole PNG before it is stored: the signature, then every chunk's length and CRC, IHDR
 * first with a sane size, IEND last with nothing after it. A figure comes from code we do not trust,
 * so "starts with PNG" is not enough. Returns the size, or a reason it is refused.
 */
export function checkPng(png: Buffer, maxPixels: number): PngInfo | { problem: string } {
  if (png.length < SIGNATURE.length + 25 || !png.subarray(0, 8).equals(SIGNATURE)) return { problem: 'not a PNG' };
  let at = 8;
  let info: PngInfo | null = null;
  while (at + 12 <= png.length) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const end = at + 12 + len;
    if (len > 0x7fffffff || end > png.length) return { problem: `chunk ${JSON.stringify(type)} runs past the end` };
    if (crc32(png.subarray(at + 4, at + 8 + len)) !== png.readUInt32BE(at + 8 + len)) return { problem: `chunk ${JSON.stringify(type)} has a bad CRC` };
    if (info === null) {
      if (type !== 'IHDR' || len !== 13) return { problem: 'IHDR is not the first chunk' };
      const width = png.readUInt32BE(at + 8);
      const height = png.readUInt32BE(at + 12);
      if (width === 0 || height === 0 || width * height > maxPixels) return { problem: `size ${width}x${height} is out of bounds` };
      info = { width, height };
    }
    at = end;
    if (type === 'IEND') return at === png.length ? info : { problem: 'data after IEND' };
  }
  return { problem: 'no IEND chunk' };
}
