import { z } from 'zod';
import { SessionboxError } from '../errors/errors';
import { decodeFilePath } from './path-encoding';

/** Longest path accepted, in UTF-8 bytes (Linux PATH_MAX is 4096; names past this are never legitimate here). */
export const MAX_FILE_PATH_BYTES = 1024;
/** Longest single segment, in UTF-8 bytes (NAME_MAX). */
export const MAX_FILE_SEGMENT_BYTES = 255;

export class InvalidPathError extends SessionboxError {
  constructor(message: string) {
    super('invalid_path', message, 400);
  }
}

/**
 * Why a path relative to the session's working directory is refused, or null when it is fine.
 * Pure and strict on purpose: the container checks again (and never follows a symlink), but a bad
 * path should be a 400 before it gets that far.
 */
export function filePathProblem(path: string): string | null {
  if (typeof path !== 'string' || path.length === 0) return 'path is empty';
  if (path.includes('\0')) return 'path contains a NUL byte';
  // eslint-disable-next-line no-control-regex
  if (/[\x01-\x1f\x7f]/.test(path)) return 'path contains a control character';
  if (path.includes('\\')) return 'path contains a backslash';
  if (path.startsWith('/')) return 'path must be relative to the working directory';
  if (Buffer.byteLength(path, 'utf8') > MAX_FILE_PATH_BYTES) return `path is longer than ${MAX_FILE_PATH_BYTES} bytes`;
  for (const seg of path.split('/')) {
    if (seg === '') return 'path has an empty segment';
    if (seg === '..') return "path must not contain '..'";
    if (seg === '.') return "path must not contain '.' segments";
    if (Buffer.byteLength(seg, 'utf8') > MAX_FILE_SEGMENT_BYTES) return `a path segment is longer than ${MAX_FILE_SEGMENT_BYTES} bytes`;
  }
  return null;
}

/** Returns the path unchanged when it is acceptable; throws a 400 `invalid_path` otherwise. */
export function checkFilePath(path: string): string {
  const problem = filePathProblem(path);
  if (problem) throw new InvalidPathError(`${problem}: ${JSON.stringify(String(path).slice(0, 200))}`);
  return path;
}

/**
 * The file part of a request path (`/v1/sessions/<id>/files/<this part>`), percent-decoded and checked.
 * Malformed escapes are a 400 too. Bytes that are not UTF-8 come back as Python's surrogate escapes.
 */
export function filePathFromUrl(encoded: string): string {
  const decoded = decodeFilePath(encoded);
  if (decoded === null) throw new InvalidPathError('path is not valid percent-encoding');
  return checkFilePath(decoded);
}

export const FilePath = z
  .string()
  .superRefine((p, ctx) => {
    const problem = filePathProblem(p);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  .meta({ description: 'Path relative to the session working directory (/work), "/"-separated.', example: 'data/sales.csv' });
