import type { JsonClient } from './http-client';
import { fmtMs, sleep, summarize, timed, type Summary } from './stats';

/** One session that sleeps while it holds queued runs, and a bystander session's print(1) beside it (issue 14). */
export interface FairShareResult {
  queued: number;
  sleepSeconds: number;
  quiet: Summary;
  /** print(1) round trips of the bystander issued while the hog's sleep held its session. */
  during: Summary;
}

const HOG_SLEEP_S = 20;
const HOG_QUEUED = 80;

export async function runFairShare(http: JsonClient, o: { quick: boolean; log: (s: string) => void }): Promise<FairShareResult> {
  const bystander = await http.createSession();
  const hog = await http.createSession();
  try {
    for (let i = 0; i < 20; i++) await http.run(bystander.id, 'print(1)');
    const quiet: number[] = [];
    for (let i = 0; i < (o.quick ? 50 : 200); i++) quiet.push((await timed(() => expectOne(http, bystander.id))).ms);

    o.log(`fair share: one session sleeps ${HOG_SLEEP_S} s holding ${HOG_QUEUED} queued runs; the bystander's print(1) meanwhile`);
    const first = await http.request('POST', `/v1/sessions/${hog.id}/executions`, { code: `import time\ntime.sleep(${HOG_SLEEP_S})`, timeoutMs: 60_000 });
    if (first.status !== 202) throw new Error(`hog: ${first.status} ${JSON.stringify(first.body)}`);
    const state = async () => (await http.request('GET', `/v1/sessions/${hog.id}/executions/${first.body.id}`)).body.status as string;
    while ((await state()) !== 'running') await sleep(20);
    for (let i = 0; i < HOG_QUEUED; i++) {
      const r = await http.request('POST', `/v1/sessions/${hog.id}/executions`, { code: 'pass' });
      if (r.status !== 202) throw new Error(`hog queue: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const during: number[] = [];
    while ((await state()) === 'running') during.push((await timed(() => expectOne(http, bystander.id))).ms);
    return { queued: HOG_QUEUED, sleepSeconds: HOG_SLEEP_S, quiet: summarize(quiet), during: summarize(during) };
  } finally {
    await http.deleteSession(hog.id);
    await http.deleteSession(bystander.id);
  }
}

async function expectOne(http: JsonClient, sessionId: string) {
  const r = await http.run(sessionId, 'print(1)');
  if (r.stdout !== '1\n') throw new Error(`bystander print(1): ${JSON.stringify(r)}`);
}

export function fairShareRow(r: FairShareResult) {
  return {
    metric: `Bystander print(1) p50 quiet / while one session sleeps ${r.sleepSeconds} s holding ${r.queued} queued runs (${r.during.n} runs)`,
    ours: `${fmtMs(r.quiet.p50)} / ${fmtMs(r.during.p50)} (max ${fmtMs(r.during.max)})`,
    exec: '–',
    run: '–',
    target: 'during ≤ 2× quiet + 20 ms',
    met: r.during.p50 <= 2 * r.quiet.p50 + 20,
  };
}
