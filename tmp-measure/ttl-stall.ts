import { docker, startSystem, waitFor } from '../tests/helpers/system';

const exists = async (id: string) => (await docker.listContainers({ all: true, filters: { label: [`sessionbox.session-id=${id}`] } })).length > 0;

async function main() {
  const sys = await startSystem({ SESSIONBOX_REAPER_INTERVAL_MS: '1000' });
  try {
    const staller = await sys.http.createSession({ ttlSeconds: 10 });
    await sys.http.run(staller.id, [
      'import os, signal, threading, time',
      'def stopper():',
      '    while True:',
      "        for p in os.listdir('/proc'):",
      '            try:',
      "                if p.isdigit() and b'fileops' in open(f'/proc/{p}/cmdline', 'rb').read():",
      '                    os.kill(int(p), signal.SIGSTOP)',
      '            except Exception:',
      '                pass',
      '        time.sleep(0.002)',
      'threading.Thread(target=stopper, daemon=True).start()',
    ].join('\n'));
    const victim = await sys.http.createSession({ ttlSeconds: 12 });
    const vExp = Date.parse(victim.expiresAt);
    const sExp = Date.parse((await sys.http.get(`/v1/sessions/${staller.id}`)).body.expiresAt);
    await waitFor(async () => !(await exists(victim.id)), 90_000, 50);
    const vGone = Date.now();
    await waitFor(async () => !(await exists(staller.id)), 90_000, 50);
    const sGone = Date.now();
    console.log(JSON.stringify({ victimGoneAfterExpiryMs: vGone - vExp, victimLivedS: (vGone - Date.parse(victim.createdAt)) / 1000, stallerGoneAfterExpiryMs: sGone - sExp }));
  } finally {
    await sys.stop();
  }
}
void main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
