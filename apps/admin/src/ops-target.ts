import type { Cleanup, CleanupPlan, CleanupSummary, KillResult, TerminationReason } from '@sessionbox/core';
import { openAdmin, type GlobalOptions } from './context';

/**
 * What `kill` and `cleanup` act through: the core's Cleanup on Redis and the engines directly, or
 * the API's `/v1/admin/…` routes (`--url` / SESSIONBOX_URL, with the admin key), which run the same Cleanup.
 */
export interface OpsTarget {
  namespace: string;
  hosts: string[];
  /** Why records could not be read (direct mode with Redis down); null otherwise. */
  redisError: string | null;
  /** Default grace and stuck-busy limit (direct mode: from the config; via the API: the server's). */
  graceMs?: number;
  stuckBusyMs?: number;
  /** `graceMs` unset: the configured one (direct mode) or the server's (via the API). */
  plan(opts: PlanOptions): Promise<CleanupPlan>;
  /** Carries out a plan from `plan` (progress is reported in direct mode only). */
  apply(plan: CleanupPlan, onProgress?: OnProgress): Promise<CleanupSummary>;
  kill(id: string, opts: { reason?: TerminationReason; purge?: boolean }): Promise<KillResult>;
  close(): Promise<void>;
}

export type PlanOptions = Omit<CleanupPlanOptions, 'graceMs'> & { graceMs?: number };

type CleanupPlanOptions = NonNullable<Parameters<Cleanup['plan']>[0]>;
type OnProgress = NonNullable<Parameters<Cleanup['apply']>[1]>;

/** A failed call to the API: exit code 1 with its message. */
export class AdminApiError extends Error {}

class ApiOps implements OpsTarget {
  namespace = '';
  hosts: string[] = [];
  redisError = null;
  private readonly planIds = new WeakMap<CleanupPlan, string>();

  constructor(
    private readonly base: string,
    private readonly key: string | undefined,
  ) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: { ...(this.key ? { authorization: `Bearer ${this.key}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new AdminApiError(`${this.base} does not answer: ${(err as Error).cause ?? (err as Error).message}`);
    }
    const json = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
    if (!res.ok && !(res.status === 502 && path.startsWith('/v1/admin/sessions/'))) {
      throw new AdminApiError(`${method} ${path}: ${res.status} ${json?.error?.code ?? ''}: ${json?.error?.message ?? res.statusText}`);
    }
    return json as T;
  }

  async open() {
    const r = await this.call<{ namespace: string; hosts: { name: string }[] }>('GET', '/v1/admin/hosts');
    this.namespace = r.namespace;
    this.hosts = r.hosts.map((h) => h.name);
    return this;
  }

  async plan(o: PlanOptions): Promise<CleanupPlan> {
    const r = await this.call<{ plan: { planId: string; namespace: string; hosts: string[]; plannedAt: string; warnings: string[]; actions: CleanupPlan['actions']; unlistedHosts?: CleanupPlan['unlistedHosts'] } }>(
      'POST',
      '/v1/admin/cleanup',
      {
        dryRun: true,
        hosts: o.hosts,
        graceSeconds: o.graceMs === undefined ? undefined : Math.ceil(o.graceMs / 1000),
        olderThanSeconds: o.olderThanMs === undefined ? undefined : Math.ceil(o.olderThanMs / 1000),
        kinds: o.kinds?.filter((k: string) => k !== 'all'),
        all: !!o.all,
      },
    );
    const plan: CleanupPlan = {
      namespace: r.plan.namespace,
      hosts: r.plan.hosts,
      plannedAt: Date.parse(r.plan.plannedAt),
      all: !!o.all,
      actions: r.plan.actions,
      warnings: r.plan.warnings,
      unlistedHosts: r.plan.unlistedHosts ?? [],
      recordsError: null,
    };
    this.planIds.set(plan, r.plan.planId);
    return plan;
  }

  async apply(plan: CleanupPlan): Promise<CleanupSummary> {
    const id = this.planIds.get(plan);
    if (!id) throw new AdminApiError('this plan was not made through the API');
    return (await this.call<{ summary: CleanupSummary }>('POST', `/v1/admin/cleanup/${id}/apply`)).summary;
  }

  kill(id: string, o: { reason?: TerminationReason; purge?: boolean }): Promise<KillResult> {
    const q = new URLSearchParams({ ...(o.reason ? { reason: o.reason } : {}), ...(o.purge ? { purge: 'true' } : {}) });
    return this.call<KillResult>('DELETE', `/v1/admin/sessions/${id}?${q}`);
  }

  async close() {}
}

export async function openOps(g: GlobalOptions): Promise<OpsTarget> {
  if (g.url) return new ApiOps(g.url.replace(/\/$/, ''), g.key).open();
  const ctx = await openAdmin(g);
  return {
    namespace: ctx.config.namespace,
    hosts: ctx.inventory.hosts,
    redisError: ctx.redisError,
    graceMs: ctx.config.reconcileGraceMs,
    stuckBusyMs: ctx.config.maxTimeoutMs + 60_000,
    plan: (o) => ctx.cleanup.plan({ ...o, graceMs: o.graceMs ?? ctx.config.reconcileGraceMs }),
    apply: (plan, onProgress) => ctx.cleanup.apply(plan, onProgress),
    kill: (id, o) => ctx.cleanup.kill(id, o),
    close: () => ctx.close(),
  };
}
