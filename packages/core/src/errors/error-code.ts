/**
 * Every `error.code` an answer can carry: the one vocabulary of the error classes, the OpenAPI
 * error schema and clients (bullmq's `enums/error-code.ts` is the model). Add a code here first.
 */
export const ErrorCode = {
  // 400
  InvalidRequest: 'invalid_request',
  BadRequest: 'bad_request',
  InvalidPath: 'invalid_path',
  // 401
  Unauthorized: 'unauthorized',
  // 403
  AdminOnly: 'admin_only',
  // 404
  SessionNotFound: 'session_not_found',
  ExecutionNotFound: 'execution_not_found',
  FigureNotFound: 'figure_not_found',
  FileNotFound: 'file_not_found',
  ArchiveNotFound: 'archive_not_found',
  RouteNotFound: 'route_not_found',
  CleanupPlanNotFound: 'cleanup_plan_not_found',
  // 408, 431 (requests Node cannot parse)
  RequestTimeout: 'request_timeout',
  HeadersTooLarge: 'headers_too_large',
  // 409
  ConfirmAll: 'confirm_all',
  SessionNotTerminated: 'session_not_terminated',
  // 410
  SessionExpired: 'session_expired',
  SessionTerminated: 'session_terminated',
  ArchiveUnavailable: 'archive_unavailable',
  ArchiveExpired: 'archive_expired',
  // 413
  PayloadTooLarge: 'payload_too_large',
  FileTooLarge: 'file_too_large',
  SessionFilesTooLarge: 'session_files_too_large',
  ArchiveTooLarge: 'archive_too_large',
  // 415
  UnsupportedMediaType: 'unsupported_media_type',
  // 429
  RateLimited: 'rate_limited',
  // 500
  InternalError: 'internal_error',
  InterruptFailed: 'interrupt_failed',
  RestartFailed: 'restart_failed',
  // 503
  RedisUnavailable: 'redis_unavailable',
  DockerUnavailable: 'docker_unavailable',
  StoreUnavailable: 'store_unavailable',
  QueueUnavailable: 'queue_unavailable',
  CapacityExhausted: 'capacity_exhausted',
  ContainerStartFailed: 'container_start_failed',
  HostUnknown: 'host_unknown',
  SessionUnreachable: 'session_unreachable',
  StreamFailed: 'stream_failed',
  ConsoleNotBuilt: 'console_not_built',
  ShuttingDown: 'shutting_down',
  // 504
  StreamTimeout: 'stream_timeout',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const ERROR_CODES = Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]];
