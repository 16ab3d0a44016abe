import type { TestSystem } from './system';

/**
 * Executions as the hostile suites send them, against whichever system `current()` gives (each
 * runtime's describe block starts its own): `exec` answers the raw HTTP result, `run` the
 * Execution (any status), `value` the trailing `_result` of a probe that must succeed, parsed.
 */
export function probes(current: () => TestSystem) {
  const exec = async (sid: string, code: string, timeoutMs?: number) =>
    current().http.post(`/v1/sessions/${sid}/executions?wait=true`, { code, ...(timeoutMs ? { timeoutMs } : {}) });
  const run = async (sid: string, code: string, timeoutMs?: number) => {
    const r = await exec(sid, code, timeoutMs);
    if (r.status !== 200) throw new Error(`execute: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as any;
  };
  const value = async (sid: string, code: string, timeoutMs?: number) => {
    const r = await run(sid, `import json as _json\n${code}\n_json.dumps(_result)`, timeoutMs);
    if (r.status !== 'succeeded') throw new Error(`probe failed: ${JSON.stringify(r.error ?? r)}`);
    // The result is the repr of an ASCII JSON string: only \\ and \' are escaped in it.
    return JSON.parse((r.result as string).slice(1, -1).replace(/\\(.)/g, '$1'));
  };
  return { exec, run, value };
}
