import { FileTooLargeError, InvalidPathError, NotFoundError, ValidationError, type SessionboxError } from '../errors/errors';

/**
 * The codes of the runner's `error` events: images/python-runner/runner/errors.py (`ErrorCode`)
 * is the one table on the Python side, this is the one on ours. A code the runner sends that is
 * not listed here is treated as `bad_request`.
 */
export const RUNNER_ERROR_CODES = ['bad_request', 'invalid_path', 'not_found', 'exists', 'too_large', 'quota_exceeded'] as const;
export type RunnerErrorCode = (typeof RUNNER_ERROR_CODES)[number];

/** What each runner code becomes at the HTTP boundary: one of our typed errors (`path`: the file asked about). */
export const RUNNER_ERRORS: Readonly<Record<RunnerErrorCode, (message: string, path?: string) => SessionboxError>> = {
  bad_request: (message) => new ValidationError(message),
  invalid_path: (message) => new InvalidPathError(message),
  not_found: (_message, path) => new NotFoundError('file', path ?? ''),
  exists: (message) => new ValidationError(message),
  too_large: (message) => new FileTooLargeError('file_too_large', message),
  quota_exceeded: (message) => new FileTooLargeError('session_files_too_large', message),
};

export function runnerErrorCode(value: unknown): RunnerErrorCode {
  return (RUNNER_ERROR_CODES as readonly unknown[]).includes(value) ? (value as RunnerErrorCode) : 'bad_request';
}
