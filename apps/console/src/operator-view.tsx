import { useEffect, useState } from 'preact/hooks';
import { ApiError } from './api-client';
import { useApp } from './app-context';
import { BarChart } from './charts';
import { bytes, duration } from './format';

interface AdminSession {
  id: string | null;
  state: string;
  owner: string | null;
  host: string | null;
  ageSeconds: number | null;
  idleSeconds: number | null;
  ttlLeftSeconds: number | null;
  memoryBytes: number | null;
  memoryLimitBytes: number | null;
  cpuPercent: number | null;
  cpuSeconds: number | null;
  executions: number;
}

interface AdminHost {
  name: string;
  capacity: number;
  liveSessions: number;
  takesSessions: boolean;
  engine: string;
  warmPool: number;
  queue: { waiting: number; active: number };
}

interface Stats {
  perMinute: { at: string; executions: number; failed: number; p50Ms: number | null; p95Ms: number | null }[];
}

interface PlanAnswer {
  dryRun: boolean;
  plan: { planId: string; warnings: string[]; actions: { kind: string; sessionId: string | null; host: string | null; reason: string }[] };
  summary: { kinds: Record<string, { found: number; removed: number; failed: number; skipped: number }> } | null;
}

const errText = (err: unknown) => (err instanceof ApiError ? `${err.status} ${err.code}: ${err.message}` : String((err as Error)?.message ?? err));
const REFRESH_MS = 5000;

function KillButton({ id, onDone }: { id: string; onDone(msg: string | null): void }) {
  const { api, t } = useApp();
  const [armed, setArmed] = useState(false);
  return (
    <button
      type="button"
      class="danger"
      data-testid="kill"
      onClick={async () => {
        if (!armed) return setArmed(true);
        try {
          await api.json('DELETE', `/v1/admin/sessions/${id}`);
          onDone(null);
        } catch (err) {
          onDone(errText(err));
        }
      }}
    >
      {armed ? t.reallyKill : t.kill}
    </button>
  );
}

function CleanupPanel({ onChanged }: { onChanged(): void }) {
  const { api, t } = useApp();
  const [answer, setAnswer] = useState<PlanAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const dryRun = async () => {
    setError(null);
    try {
      setAnswer(await api.json<PlanAnswer>('POST', '/v1/admin/cleanup', { dryRun: true }));
    } catch (err) {
      setError(errText(err));
    }
  };
  const apply = async () => {
    if (!answer) return;
    try {
      setAnswer(await api.json<PlanAnswer>('POST', `/v1/admin/cleanup/${answer.plan.planId}/apply`));
      onChanged();
    } catch (err) {
      setError(errText(err));
    }
  };
  return (
    <section class="panel" data-testid="cleanup">
      <h2>{t.cleanup}</h2>
      <button type="button" onClick={dryRun} data-testid="cleanup-dry-run">
        {t.dryRun}
      </button>{' '}
      {answer?.dryRun && answer.plan.actions.length > 0 && (
        <button type="button" class="danger" onClick={apply} data-testid="cleanup-apply">
          {t.apply}
        </button>
      )}
      {error && <p class="error">{error}</p>}
      {answer && answer.plan.actions.length === 0 && <p class="muted" data-testid="cleanup-empty">{t.nothingToDo}</p>}
      {answer?.plan.warnings.map((w) => <p class="warn">{w}</p>)}
      {answer && answer.plan.actions.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>{t.kind}</th>
              <th>{t.session}</th>
              <th>{t.host}</th>
              <th>{t.why}</th>
            </tr>
          </thead>
          <tbody>
            {answer.plan.actions.map((a) => (
              <tr>
                <td>{a.kind}</td>
                <td>
                  <code>{a.sessionId ?? '–'}</code>
                </td>
                <td>{a.host ?? '–'}</td>
                <td>{a.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {answer?.summary && (
        <p data-testid="cleanup-summary">
          {t.applied}:{' '}
          {Object.entries(answer.summary.kinds)
            .filter(([, v]) => v.found)
            .map(([k, v]) => `${k} ${v.removed}/${v.found}`)
            .join(', ') || '0'}
        </p>
      )}
    </section>
  );
}

export function OperatorView() {
  const { api, t } = useApp();
  const [sessions, setSessions] = useState<AdminSession[] | null>(null);
  const [hosts, setHosts] = useState<{ hosts: AdminHost[]; poolTarget: number } | null>(null);
  const [stats, setStats] = useState<Stats | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    let gone = false;
    Promise.all([
      api.json<{ sessions: AdminSession[] }>('GET', '/v1/admin/sessions'),
      api.json<{ hosts: AdminHost[]; poolTarget: number }>('GET', '/v1/admin/hosts'),
      api.json<Stats>('GET', '/v1/admin/stats?minutes=15'),
    ]).then(
      ([s, h, st]) => {
        if (gone) return;
        setSessions(s.sessions);
        setHosts(h);
        setStats(st);
        setError(null);
      },
      (err) => !gone && setError(err instanceof ApiError && err.status === 403 ? t.adminOnly : errText(err)),
    );
    const timer = setTimeout(() => setTick((x) => x + 1), REFRESH_MS);
    return () => {
      gone = true;
      clearTimeout(timer);
    };
  }, [tick]);
  const refresh = () => setTick((x) => x + 1);

  return (
    <div class="operator" data-testid="operator">
      {error && <p class="error" data-testid="operator-error">{error}</p>}
      <div class="charts">
        {stats && <BarChart testId="chart-rate" label={t.rate} values={stats.perMinute.map((m) => m.executions)} />}
        {stats && <BarChart testId="chart-latency" label={t.latency} values={stats.perMinute.map((m) => m.p95Ms)} color="#f59e0b" />}
      </div>
      <section class="panel">
        <h2>
          {t.hosts} <button type="button" onClick={refresh}>{t.refresh}</button>
        </h2>
        <table data-testid="hosts">
          <thead>
            <tr>
              <th>{t.host}</th>
              <th>
                {t.live} / {t.capacity}
              </th>
              <th />
              <th>{t.health}</th>
              <th>{t.warmPool}</th>
              <th>{t.queue}</th>
            </tr>
          </thead>
          <tbody>
            {hosts?.hosts.map((h) => (
              <tr key={h.name}>
                <td>{h.name}</td>
                <td>
                  {h.liveSessions} / {h.capacity}
                </td>
                <td>
                  <meter min={0} max={h.capacity} value={h.liveSessions} />
                </td>
                <td class={h.engine === 'ok' && h.takesSessions ? 'ok' : 'warn'}>
                  {h.engine === 'ok' ? 'engine ok' : h.engine}, {h.takesSessions ? t.takesSessions : t.markedDown}
                </td>
                <td>
                  {h.warmPool} / {hosts.poolTarget}
                </td>
                <td>
                  {h.queue.waiting} / {h.queue.active}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section class="panel">
        <h2>{t.sessions}</h2>
        <table data-testid="admin-sessions">
          <thead>
            <tr>
              <th>ID</th>
              <th>{t.owner}</th>
              <th>{t.host}</th>
              <th>{t.status}</th>
              <th>{t.age}</th>
              <th>{t.idle}</th>
              <th>{t.ttlLeft}</th>
              <th>{t.mem}</th>
              <th>{t.cpu}</th>
              <th>{t.execs}</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {sessions?.map((s) => (
              <tr key={s.id ?? Math.random()} data-session-id={s.id ?? ''}>
                <td>
                  <code title={s.id ?? ''}>{s.id?.slice(0, 8) ?? '–'}</code>
                </td>
                <td data-testid="owner">{s.owner ?? '–'}</td>
                <td>{s.host ?? '–'}</td>
                <td>{s.state}</td>
                <td>{duration(s.ageSeconds)}</td>
                <td>{duration(s.idleSeconds)}</td>
                <td>{duration(s.ttlLeftSeconds)}</td>
                <td>
                  {bytes(s.memoryBytes)}
                  {s.memoryLimitBytes ? ` / ${bytes(s.memoryLimitBytes)}` : ''}
                </td>
                <td title="CPU now · CPU time used" data-testid="cpu">
                  {s.cpuPercent === null ? '–' : `${s.cpuPercent.toFixed(1)}%`}
                  {s.cpuSeconds === null ? '' : ` · ${s.cpuSeconds.toFixed(2)} s`}
                </td>
                <td>{s.executions}</td>
                <td>{s.id && <KillButton id={s.id} onDone={(msg) => (msg ? setError(msg) : refresh())} />}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <CleanupPanel onChanged={refresh} />
    </div>
  );
}
