import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The one metrics registry of a process; api and worker each make theirs at start. */
export function createMetrics(opts: { defaultMetrics?: boolean; prefix?: string } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  const p = opts.prefix ?? 'sessionbox_';
  const registers = [registry];
  return {
    registry,
    sessionsLive: new Gauge({ name: `${p}sessions_live`, help: 'Live sessions by host and status', labelNames: ['host', 'status'], registers }),
    poolSize: new Gauge({ name: `${p}pool_size`, help: 'Warm containers ready to be claimed, by tier (eager: imports done; lazy: on first use)', labelNames: ['host', 'tier'], registers }),
    hostUp: new Gauge({ name: `${p}host_up`, help: 'Docker host taking new sessions (1) or marked down (0)', labelNames: ['host'], registers }),
    executions: new Counter({ name: `${p}executions_total`, help: 'Finished executions by outcome', labelNames: ['status', 'cause'], registers }),
    queueWaitSeconds: new Histogram({
      name: `${p}execution_queue_wait_seconds`,
      help: 'Time from submission to start',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    runSeconds: new Histogram({
      name: `${p}execution_run_seconds`,
      help: 'Time from start to end of a run',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    sessionCreateSeconds: new Histogram({
      name: `${p}session_create_seconds`,
      help: 'Session creation time (container create+start, or warm claim)',
      labelNames: ['host', 'warm'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    containerRemoveSeconds: new Histogram({
      name: `${p}container_remove_seconds`,
      help: 'Container removal time',
      labelNames: ['host'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    sessionsTerminated: new Counter({ name: `${p}sessions_terminated_total`, help: 'Sessions terminated by reason', labelNames: ['reason'], registers }),
    reaperActions: new Counter({ name: `${p}reaper_actions_total`, help: 'Reaper and cleanup actions', labelNames: ['action'], registers }),
    oomKills: new Counter({ name: `${p}oom_kills_total`, help: 'Runs ended by the out-of-memory killer', registers }),
    timeouts: new Counter({ name: `${p}timeouts_total`, help: 'Runs stopped at their timeout', registers }),
  };
}
export type Metrics = ReturnType<typeof createMetrics>;

let disabled: Metrics | null = null;

/**
 * For parts built without the process's metrics (CLI, tests): the same counters on a registry of
 * their own that nobody scrapes, so callers count unconditionally instead of `metrics?.` each time.
 */
export function disabledMetrics(): Metrics {
  return (disabled ??= createMetrics());
}
