/**
 * The codes of the runner's `error` events: images/python-runner/runner/errors.py (`ErrorCode`)
 * is the one table on the Python side, this is the one on ours. A code the runner sends that is
 * not listed here is treated as `bad_request`.
 */
export const RUNNER_ERROR_CODES = ['bad_request', 'invalid_path', 'not_found', 'exists', 'too_large', 'quota_exceeded'] as const;
export type RunnerErrorCode = (typeof RUNNER_ERROR_CODES)[number];

/** What each runner code becomes at the HTTP boundary: the API's error code and its status. */
export const RUNNER_ERRORS: Readonly<Record<RunnerErrorCode, { code: string; status: number }>> = {
  bad_request: { code: 'invalid_request', status: 400 },
  invalid_path: { code: 'invalid_path', status: 400 },
  not_found: { code: 'file_not_found', status: 404 },
  exists: { code: 'invalid_request', status: 400 },
  too_large: { code: 'file_too_large', status: 413 },
  quota_exceeded: { code: 'session_files_too_large', status: 413 },
};

export function runnerErrorCode(value: unknown): RunnerErrorCode {
  return (RUNNER_ERROR_CODES as readonly unknown[]).includes(value) ? (value as RunnerErrorCode) : 'bad_request';
}
