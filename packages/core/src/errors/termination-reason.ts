/**
 * Why a session ended: stored on its record (`terminationReason`), counted in
 * `sessionbox_sessions_terminated_total`, and carried in the 410's `error.reason`.
 */
export const TERMINATION_REASONS = [
  /** DELETE /v1/sessions/:id */
  'deleted',
  /** idle past its TTL */
  'expired',
  /** an MCP client closed it (`close_session`) */
  'closed',
  /** a one-shot tool run that made its own session is over */
  'completed',
  /** a session made for a request that then failed */
  'rolled_back',
  /** `sessionbox-admin kill` (the default of its --reason) */
  'admin_kill',
  /** `sessionbox-admin cleanup --all` */
  'admin_cleanup',
  /** its Docker engine stopped answering */
  'host_down',
  // Why its container stopped serving it (runtime/death-reason.ts):
  'container_removed',
  'oom',
  'container_exited',
  'container_unresponsive',
  'engine_unavailable',
  /** a record that names no reason */
  'terminated',
] as const;
export type TerminationReason = (typeof TERMINATION_REASONS)[number];

export function isTerminationReason(s: unknown): s is TerminationReason {
  return (TERMINATION_REASONS as readonly unknown[]).includes(s);
}
