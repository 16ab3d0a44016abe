/**
 * File names in a session are bytes. Python hands a name that is not UTF-8 to us as a string with
 * lone surrogates U+DC80–U+DCFF standing for the bad bytes (PEP 383 "surrogateescape"), and turns
 * such a string back into the same bytes when it opens the file. These two functions are that
 * mapping for URLs: a bad byte travels as its own `%XX`, so every listed name has a URL that
 * downloads it, and `encodeURIComponent` never meets a lone surrogate (on which it throws).
 */

const ESCAPED_LOW = 0xdc80;
const ESCAPED_HIGH = 0xdcff;

/** One path segment per `/`, percent-encoded; escaped bytes become `%XX`. */
export function encodeFilePath(path: string): string {
  return path
    .split('/')
    .map((seg) => {
      let out = '';
      let run = '';
      for (let i = 0; i < seg.length; i++) {
        const c = seg.charCodeAt(i);
        const lone = c >= 0xd800 && c <= 0xdfff && !(c <= 0xdbff && isLow(seg.charCodeAt(i + 1))) && !(c >= 0xdc00 && isHigh(seg.charCodeAt(i - 1)));
        if (!lone) {
          run += seg[i];
          continue;
        }
        out += encodeURIComponent(run);
        run = '';
        // Only U+DC80–U+DCFF come from Python; any other lone surrogate is not a name a file can have.
        out += c >= ESCAPED_LOW && c <= ESCAPED_HIGH ? `%${(c - 0xdc00).toString(16).toUpperCase().padStart(2, '0')}` : '%EF%BF%BD';
      }
      return out + encodeURIComponent(run);
    })
    .join('/');
}

/** Percent-decodes to bytes, then reads them as UTF-8 with every invalid byte kept as U+DC80+byte. Null on a malformed escape. */
export function decodeFilePath(encoded: string): string | null {
  const bytes: number[] = [];
  for (let i = 0; i < encoded.length; i++) {
    const ch = encoded[i];
    if (ch === '%') {
      const hex = encoded.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return null;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      for (const b of Buffer.from(ch, 'utf8')) bytes.push(b);
    }
  }
  return utf8WithEscapes(Uint8Array.from(bytes));
}

function isHigh(c: number) {
  return c >= 0xd800 && c <= 0xdbff;
}
function isLow(c: number) {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** UTF-8 decoding as Python's `bytes.decode('utf-8', 'surrogateescape')`. */
export function utf8WithEscapes(b: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const n = sequenceLength(b, i);
    if (n === 0) {
      out += String.fromCharCode(b[i] < 0x80 ? b[i] : 0xdc00 + b[i]);
      i += 1;
    } else {
      out += Buffer.from(b.subarray(i, i + n)).toString('utf8');
      i += n;
    }
  }
  return out;
}

/** Length of the valid UTF-8 sequence at `i` (1–4), or 0 when the byte there starts none. */
function sequenceLength(b: Uint8Array, i: number): number {
  const c0 = b[i];
  if (c0 < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k] >= lo && b[i + k] <= hi;
  if (c0 >= 0xc2 && c0 <= 0xdf) return cont(1) ? 2 : 0;
  if (c0 === 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if (c0 === 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0; // no encoded surrogates
  if (c0 >= 0xe1 && c0 <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c0 === 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c0 >= 0xf1 && c0 <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c0 === 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}
