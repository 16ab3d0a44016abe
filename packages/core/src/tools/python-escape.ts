import { PythonEscapeError } from '../errors/errors';

/**
 * Python's `codecs.decode(s, 'unicode_escape')`, as the FastAPI executor next to Dify applies it to
 * the code it receives (an LLM writes the code into JSON with its newlines as `\n` two-char escapes),
 * except for one thing: Python's codec reads the string as UTF-8 bytes and turns every non-ASCII
 * character into Latin-1 mojibake (`売上` → `å£²ä¸\x8a`). Here non-ASCII text is kept as it is.
 *
 * Decoded like Python: `\\ \' \" \a \b \f \n \r \t \v`, backslash-newline (removed), octal `\ooo`
 * (1-3 digits), `\xHH`, `\uXXXX`, `\UXXXXXXXX`. Unknown escapes such as `\d` stay as they are (as in
 * Python). Where Python's codec would raise (a truncated `\x`/`\u`/`\U`, a code point past U+10FFFF,
 * a trailing lone backslash) the text is kept as written unless `strict` is set. `\N{NAME}` is kept
 * as written too: inside a Python string literal, Python itself decodes it when the code runs.
 */

const SIMPLE: Record<string, string> = {
  '\\': '\\',
  "'": "'",
  '"': '"',
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
  v: '\v',
  '\n': '',
};

// One alternation per escape Python knows; scanning left to right keeps `\\n` as backslash + `n`.
const ESCAPE = /\\(?:([\\'"abfnrtv\n])|([0-7]{1,3})|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|([xuU]|$))/g;

export interface DecodeOptions {
  /** Throw a `PythonEscapeError` where Python's codec raises, instead of keeping the text. */
  strict?: boolean;
}

export function decodePythonEscapes(input: string, opts: DecodeOptions = {}): string {
  if (!input.includes('\\')) return input;
  return input.replace(ESCAPE, (whole, simple: string, octal: string, hex2: string, hex4: string, hex8: string, bad: string, offset: number) => {
    if (simple !== undefined) return SIMPLE[simple];
    if (octal !== undefined) return String.fromCharCode(parseInt(octal, 8));
    if (hex2 !== undefined) return String.fromCharCode(parseInt(hex2, 16));
    if (hex4 !== undefined) return String.fromCharCode(parseInt(hex4, 16));
    if (hex8 !== undefined) {
      const cp = parseInt(hex8, 16);
      if (cp <= 0x10ffff) return String.fromCodePoint(cp);
      if (opts.strict) throw new PythonEscapeError(`illegal Unicode character \\U${hex8} at position ${offset}`, offset);
      return whole;
    }
    if (opts.strict) {
      const what = bad === '' ? '\\ at end of string' : `truncated \\${bad} escape at position ${offset}`;
      throw new PythonEscapeError(what, offset);
    }
    return whole;
  });
}
