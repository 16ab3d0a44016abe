import type { JsonClient } from './http-client';
import { fmtMs, summarize, timed, type Summary } from './stats';
import { PYTHON3_RUNNER } from '../tests/helpers/dify-templates';

/**
 * `--only dify`: `POST /v1/sandbox/run` as Dify's Code node sends it (python3_transformer's runner
 * around a `main`, inputs as base64 JSON), each call a throwaway session from the warm pool.
 */


const TRIVIAL = 'def main(x: int) -> dict:\n    return {"y": x + 1}';
const PANDAS = [
  'def main(x: int) -> dict:',
  '    import pandas as pd',
  '    df = pd.DataFrame({"a": range(1000), "b": range(1000)})',
  '    return {"y": int(df["a"].sum()) + x}',
].join('\n');

/** What dify-sandbox itself ships with, for the comparison (its image is not run here). */
export const DIFY_SANDBOX_DEFAULTS =
  "dify-sandbox's defaults: worker_timeout 5 s in its conf/config.yaml (Dify's compose sets WORKER_TIMEOUT=15), max_workers 4, max_requests 50, " +
  'a fresh python3 process per run under its seccomp filter, standard library only until python-requirements.txt is filled (no pandas)';

export interface DifyBenchResult {
  trivial: Summary;
  pandas: Summary;
  difySandboxDefaults: string;
}

async function runMain(http: JsonClient, code: string): Promise<void> {
  const inputs = Buffer.from(JSON.stringify({ x: 1 })).toString('base64');
  const r = await http.request('POST', '/v1/sandbox/run', {
    language: 'python3',
    code: PYTHON3_RUNNER.replace('{{code}}', code).replace('{{inputs}}', inputs),
    preload: '',
    enable_network: true,
  });
  const body = r.body as { code: number; data: { stdout: string; error: string } | null };
  if (r.status !== 200 || body.code !== 0 || body.data?.error || !body.data?.stdout.includes('<<RESULT>>')) {
    throw new Error(`dify-sandbox run: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  }
}

export async function benchDifySandbox(http: JsonClient, count: number, waitPool: () => Promise<void>): Promise<DifyBenchResult> {
  const measure = async (code: string) => {
    const xs: number[] = [];
    for (let i = 0; i < count; i++) {
      await waitPool(); // every call takes a warm container; refills are not what is measured
      xs.push((await timed(() => runMain(http, code))).ms);
    }
    return summarize(xs);
  };
  return { trivial: await measure(TRIVIAL), pandas: await measure(PANDAS), difySandboxDefaults: DIFY_SANDBOX_DEFAULTS };
}

export function difyReportLines(r: DifyBenchResult): string[] {
  return [
    '',
    `dify-sandbox drop-in, \`POST /v1/sandbox/run\` with Dify's python3 runner, a warm throwaway container per call (p50 / p95): ` +
      `trivial main ${fmtMs(r.trivial.p50)} / ${fmtMs(r.trivial.p95)}, pandas main ${fmtMs(r.pandas.p50)} / ${fmtMs(r.pandas.p95)}. ${r.difySandboxDefaults}.`,
  ];
}
