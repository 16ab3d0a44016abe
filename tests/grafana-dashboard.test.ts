import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Http, startSystem, type TestSystem } from './helpers/system';

/**
 * deploy/grafana/sessionbox-dashboard.json only queries series that exist: every metric name in its
 * PromQL appears in the /metrics of a real api or worker (after a session and a run, so that
 * labelled series have samples), and every label it groups by is a label of that metric.
 */
const DASHBOARD = join(__dirname, '../deploy/grafana/sessionbox-dashboard.json');
/** Labels Prometheus adds at scrape time, and the histogram bucket label. */
const SCRAPE_LABELS = new Set(['job', 'instance', 'le']);

interface Family {
  labels: Set<string>;
  declared: boolean;
}

/** Metric families of a Prometheus text exposition, each with the labels its samples carry. */
function families(text: string): Map<string, Family> {
  const out = new Map<string, Family>();
  const fam = (name: string) => out.get(name) ?? out.set(name, { labels: new Set(), declared: false }).get(name)!;
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      fam(type[1]).declared = true;
      if (type[2] === 'histogram' || type[2] === 'summary') for (const s of ['_bucket', '_sum', '_count']) fam(type[1] + s).declared = true;
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? /.exec(line);
    if (!sample) continue;
    const f = fam(sample[1]);
    for (const m of (sample[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) f.labels.add(m[1]);
  }
  return out;
}

/** The metric names a PromQL expression reads, and the labels it groups by. */
export function promqlRefs(expr: string): { metrics: string[]; groupBy: string[] } {
  const groupBy = [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1].split(',').map((s) => s.trim()).filter(Boolean));
  const stripped = expr
    .replace(/\b(?:by|without)\s*\([^)]*\)/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/"[^"]*"/g, ' ');
  const metrics = [...stripped.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)]
    .filter((m) => !m[2] && !/^\d/.test(m[1]))
    .map((m) => m[1]);
  return { metrics, groupBy };
}

function dashboardExprs(): string[] {
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8'));
  const exprs: string[] = [];
  for (const p of d.panels) for (const t of p.targets ?? []) exprs.push(t.expr);
  for (const v of d.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    const m = v.type === 'query' && /label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(q ?? '');
    if (m) exprs.push(m[1]);
  }
  return exprs;
}

describe('Grafana dashboard', () => {
  let sys: TestSystem;
  let exposed: Map<string, Family>;

  beforeAll(async () => {
    sys = await startSystem({ SESSIONBOX_WORKER_METRICS_PORT: '0' });
    const s = await sys.http.createSession();
    await sys.http.run(s.id, 'print(1)');
    await sys.http.run(s.id, 'import time; time.sleep(60)', 300).catch(() => undefined);
    await sys.http.delete(`/v1/sessions/${s.id}`);
    const api = await sys.http.get('/metrics');
    const worker = await new Http(sys.worker!.http!.url).get('/metrics');
    expect(api.status).toBe(200);
    expect(worker.status).toBe(200);
    exposed = families(`${api.raw.toString('utf8')}\n${worker.raw.toString('utf8')}`);
  });

  afterAll(async () => {
    await sys?.stop();
  });

  test('the PromQL parser finds metric names and grouping labels', () => {
    expect(promqlRefs('histogram_quantile(0.95, sum by (le, warm) (rate(sessionbox_session_create_seconds_bucket{job=~"$job"}[5m])))')).toEqual({
      metrics: ['sessionbox_session_create_seconds_bucket'],
      groupBy: ['le', 'warm'],
    });
    expect(promqlRefs('sum(max by (host) (a_b{x="y"})) / c:d').metrics).toEqual(['a_b', 'c:d']);
  });

  test('every series the dashboard queries exists in /metrics, with the labels it groups by', () => {
    const exprs = dashboardExprs();
    expect(exprs.length).toBeGreaterThan(15);
    const missing: string[] = [];
    const badLabels: string[] = [];
    const seen = new Set<string>();
    for (const expr of exprs) {
      const { metrics, groupBy } = promqlRefs(expr);
      expect(metrics.length).toBeGreaterThan(0);
      for (const name of metrics) {
        seen.add(name);
        const fam = exposed.get(name);
        if (!fam || (!fam.declared && fam.labels.size === 0)) {
          missing.push(name);
          continue;
        }
        // A labelled family without samples yet (e.g. no reaper action so far) cannot show its labels.
        const sampled = fam.labels.size > 0;
        for (const l of groupBy) if (sampled && !SCRAPE_LABELS.has(l) && !fam.labels.has(l)) badLabels.push(`${name} by ${l}`);
      }
    }
    expect(missing).toEqual([]);
    expect(badLabels).toEqual([]);
    // The dashboard covers the system's own metrics, not just process ones.
    for (const name of ['sessionbox_sessions_live', 'sessionbox_executions_total', 'sessionbox_execution_run_seconds_bucket', 'sessionbox_pool_size']) {
      expect(seen).toContain(name);
    }
  });
});
