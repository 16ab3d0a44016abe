import fc from 'fast-check';
import { PythonEscapeError, decodePythonEscapes } from '@sessionbox/core';

// Expected values are what CPython 3.11 `codecs.decode(s, 'unicode_escape')` returns for these (ASCII) inputs.
const PYTHON_CASES: [string, string][] = [
  ['a\\nb', 'a\nb'],
  ['\\t\\r\\"\\\'\\\\', '\t\r"\'\\'],
  ['\\\\n', '\\n'],
  ['\\\\\\\\n', '\\\\n'],
  ['\\a\\b\\f\\v', '\x07\b\f\v'],
  ['x\\\ny', 'xy'],
  ['\\101\\60\\0', 'A0\0'],
  ['\\777', '\u01ff'],
  ['\\x41\\x7e', 'A~'],
  ['\\u3042', '\u3042'],
  ['\\U0001F600', '\u{1F600}'],
  ['\\d\\s\\w', '\\d\\s\\w'],
  ['\\8', '\\8'],
  ['a\\\r\nb', 'a\\\r\nb'],
  ['print(\\"hi\\")\\nx = 1', 'print("hi")\nx = 1'],
];

describe('decodePythonEscapes', () => {
  test.each(PYTHON_CASES)('decodes %j as Python does', (input, expected) => {
    expect(decodePythonEscapes(input)).toBe(expected);
  });

  test('keeps Japanese and other non-ASCII text intact (Python would turn it into Latin-1 mojibake)', () => {
    const input = 'import japanize_matplotlib\\nprint("売上の推移 📈")\\nlabel = "東京\\t大阪"';
    expect(decodePythonEscapes(input)).toBe('import japanize_matplotlib\nprint("売上の推移 📈")\nlabel = "東京\t大阪"');
    expect(decodePythonEscapes('\\売上')).toBe('\\売上');
  });

  test('leaves what Python rejects as written, or throws in strict mode', () => {
    for (const bad of ['\\x4', '\\u12', '\\U00110000', 'end\\']) {
      expect(decodePythonEscapes(bad)).toBe(bad);
      expect(() => decodePythonEscapes(bad, { strict: true })).toThrow(PythonEscapeError);
    }
    expect(() => decodePythonEscapes('ok\\x4', { strict: true })).toThrow(/truncated \\x escape at position 2/);
  });

  test('keeps \\N{NAME} for Python itself to decode inside the string literal', () => {
    expect(decodePythonEscapes('print("\\N{BULLET}")')).toBe('print("\\N{BULLET}")');
  });

  test('the Dify prompt example: escaped newlines and quotes become runnable code', () => {
    const fromLlm =
      'import matplotlib.pyplot as plt\\nimport japanize_matplotlib\\ndef create_sample_plot():\\n    fig, ax = plt.subplots()\\n    ax.set_title(\\"Sample\\")\\n    return fig\\nfig = create_sample_plot()';
    expect(decodePythonEscapes(fromLlm).split('\n')).toEqual([
      'import matplotlib.pyplot as plt',
      'import japanize_matplotlib',
      'def create_sample_plot():',
      '    fig, ax = plt.subplots()',
      '    ax.set_title("Sample")',
      '    return fig',
      'fig = create_sample_plot()',
    ]);
  });

  test('property: text without backslashes is unchanged', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }).filter((s) => !s.includes('\\')), (s) => {
        expect(decodePythonEscapes(s)).toBe(s);
      }),
    );
  });

  test('property: escaping any text the way Python source would, then decoding, gives it back', () => {
    const escape = (s: string) =>
      Array.from(s)
        .map((ch) => {
          const cp = ch.codePointAt(0)!;
          if (ch === '\\') return '\\\\';
          if (ch === '\n') return '\\n';
          if (ch === '"') return '\\"';
          if (cp < 0x20) return `\\x${cp.toString(16).padStart(2, '0')}`;
          if (cp > 0xffff) return `\\U${cp.toString(16).padStart(8, '0')}`;
          return ch; // printable and non-ASCII characters travel as they are
        })
        .join('');
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        expect(decodePythonEscapes(escape(s))).toBe(s);
      }),
    );
  });
});
