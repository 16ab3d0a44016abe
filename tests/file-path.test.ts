import fc from 'fast-check';
import { FilePath, InvalidPathError, MAX_FILE_PATH_BYTES, checkFilePath, filePathFromUrl, filePathProblem } from '@sessionbox/core';

describe('file paths relative to the working directory', () => {
  test.each(['a.csv', 'data/sales.csv', 'out/2024/report final.pdf', 'データ/売上.xlsx', '.hidden', 'a..b', '...', 'x/.config/y'])(
    'accepts %j',
    (p) => {
      expect(filePathProblem(p)).toBeNull();
      expect(checkFilePath(p)).toBe(p);
      expect(FilePath.safeParse(p).success).toBe(true);
    },
  );

  test.each([
    ['', /empty/],
    ['/etc/passwd', /relative/],
    ['//etc/passwd', /relative/],
    ['..', /'\.\.'/],
    ['../etc/passwd', /'\.\.'/],
    ['a/../../etc/passwd', /'\.\.'/],
    ['a/..', /'\.\.'/],
    ['./a.csv', /'\.' segments/],
    ['a/./b', /'\.' segments/],
    ['a//b', /empty segment/],
    ['a/', /empty segment/],
    ['a\0b', /NUL/],
    ['a\nb', /control/],
    ['..\\..\\etc\\passwd', /backslash/],
    ['C:\\Windows', /backslash/],
    ['x'.repeat(256), /segment is longer/],
    [Array(300).fill('abcd').join('/'), /longer than 1024/],
  ].map(([p, why]) => [(p as string).length > 40 ? `${(p as string).length} chars` : JSON.stringify(p), p as string, why as RegExp] as const))(
    'rejects %s',
    (_label, p, why) => {
    expect(filePathProblem(p)).toMatch(why);
    expect(() => checkFilePath(p)).toThrow(InvalidPathError);
    expect(FilePath.safeParse(p).success).toBe(false);
    },
  );

  test('the error is a 400 with code invalid_path', () => {
    try {
      checkFilePath('../x');
      throw new Error('not thrown');
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidPathError);
      expect((e as InvalidPathError).status).toBe(400);
      expect((e as InvalidPathError).toJSON().error.code).toBe('invalid_path');
    }
  });

  test('URL forms are decoded first, so encoded escapes are caught too', () => {
    expect(filePathFromUrl('data/sales%20q1.csv')).toBe('data/sales q1.csv');
    expect(filePathFromUrl('%E5%A3%B2%E4%B8%8A.csv')).toBe('売上.csv');
    for (const bad of ['%2e%2e/etc/passwd', '..%2Fetc%2Fpasswd', '%2Fetc%2Fpasswd', 'a%00b', '..%5C..%5Cx', '%E0%A4%A']) {
      expect(() => filePathFromUrl(bad)).toThrow(InvalidPathError);
    }
  });

  test('property: any path with a ".." segment, a leading "/", a NUL or a backslash is refused', () => {
    const seg = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !s.includes('/'));
    const bad = fc.oneof(
      fc.tuple(fc.array(seg, { maxLength: 4 }), fc.array(seg, { maxLength: 4 })).map(([a, b]) => [...a, '..', ...b].join('/')),
      fc.array(seg, { minLength: 1, maxLength: 4 }).map((a) => '/' + a.join('/')),
      fc.tuple(seg, seg).map(([a, b]) => `${a}\0${b}`),
      fc.tuple(seg, seg).map(([a, b]) => `${a}\\${b}`),
    );
    fc.assert(fc.property(bad, (p) => filePathProblem(p) !== null));
  });

  test('property: every accepted path is relative, has no dot segment and fits the byte cap', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (p) => {
        if (filePathProblem(p) !== null) return true;
        const segs = p.split('/');
        return !p.startsWith('/') && segs.every((s) => s !== '' && s !== '.' && s !== '..') && Buffer.byteLength(p) <= MAX_FILE_PATH_BYTES;
      }),
    );
  });
});
