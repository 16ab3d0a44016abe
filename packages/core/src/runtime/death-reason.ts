import type { ContainerInfo } from './container-runtime';

/**
 * Why a session's container stopped serving it, as the engine sees it; the one vocabulary of the
 * reaper, cleanup and the worker (it becomes the session's termination reason).
 */
export type DeathReason = 'container_removed' | 'oom' | 'container_exited' | 'container_unresponsive' | 'engine_unavailable';

/** `info` is the engine's inspect answer (null: no such container). */
export function deathReason(info: Pick<ContainerInfo, 'running' | 'oomKilled'> | null): DeathReason {
  if (!info) return 'container_removed';
  if (info.oomKilled) return 'oom';
  if (!info.running) return 'container_exited';
  return 'container_unresponsive';
}
