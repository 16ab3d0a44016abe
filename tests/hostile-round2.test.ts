/**
 * Hostile code, round 2 (issue 15, the sandbox-side items): code in a session tries to forge the
 * backend's answers and to reach kernel surface or per-user quotas it shares with other tenants.
 * Each case runs on the real engine once per installed OCI runtime (runc always, runsc when
 * `docker info` lists it and it can start a container), and checks a bystander session of
 * another tenant (its state and a print(1)) while the case runs and after it.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RUNNER_ERROR_CODES } from '@sessionbox/core';
import { namespaceContainers, sleep, startSystem, type TestSystem } from './helpers/system';
import { probes } from './helpers/probes';

type Runtime = 'runc' | 'runsc';

function runscUnavailable(): string | null {
  let runtimes: string[] = [];
  try {
    runtimes = Object.keys(JSON.parse(execFileSync('docker', ['info', '--format', '{{json .Runtimes}}'], { encoding: 'utf8' })));
  } catch {
    // no engine: the runc half fails on its own
  }
  if (!runtimes.includes('runsc')) return 'runsc (gVisor) is not registered with the Docker engine';
  try {
    const image = process.env.SESSIONBOX_IMAGE ?? 'sessionbox/python-runner:latest';
    execFileSync('docker', ['run', '--rm', '--runtime=runsc', '--network=none', '--entrypoint=true', image], { stdio: 'pipe', timeout: 60_000 });
    return null;
  } catch (err) {
    return `runsc cannot start a container here: ${String((err as { stderr?: Buffer }).stderr ?? err).trim().split('\n')[0]}`;
  }
}

const RUNSC_SKIPPED = runscUnavailable();
if (RUNSC_SKIPPED && process.env.CI === 'true') throw new Error(`hostile round 2 needs runsc in CI: ${RUNSC_SKIPPED}`);

/** Python source from an indented template (raw: backslashes reach Python as written). */
function py(strings: TemplateStringsArray, ...values: unknown[]): string {
  const text = String.raw({ raw: strings.raw }, ...values).replace(/^\n/, '');
  const indent = Math.min(...text.split('\n').filter((l) => l.trim()).map((l) => /^ */.exec(l)![0].length));
  return text
    .split('\n')
    .map((l) => l.slice(indent))
    .join('\n')
    .trimEnd();
}

describe('runner error codes', () => {
  test('the Python ErrorCode table and the backend’s mapping list the same codes', () => {
    const source = readFileSync(join(__dirname, '../images/python-runner/runner/errors.py'), 'utf8');
    const python = [...source.matchAll(/^ {4}[A-Z_]+ = "([a-z_]+)"/gm)].map((m) => m[1]);
    expect(python.length).toBeGreaterThan(0);
    expect([...python].sort()).toEqual([...RUNNER_ERROR_CODES].sort());
  });
});

function describeRuntime(runtime: Runtime) {
  describe(`hostile code, round 2, under ${runtime}`, () => {
    let sys: TestSystem;
    let bystander: string;
    let bystanderCount = 0;
    let victim: string;

    const { run, value } = probes(() => sys);
    /** Another tenant's session: its state kept, and a print(1) answered. */
    const bystanderAnswers = async () => {
      const r = await run(bystander, 'n += 1\nprint(1)\nn * 1000');
      bystanderCount += 1;
      expect(r).toMatchObject({ status: 'succeeded', result: String(bystanderCount * 1000), stdout: '1\n' });
    };
    /** Runs `code` in the victim and checks the bystander while it runs, then after. */
    const hostile = async (code: string, timeoutMs: number, whileRunning: () => Promise<void> = async () => undefined) => {
      const pending = run(victim, code, timeoutMs);
      await sleep(300);
      await bystanderAnswers();
      await whileRunning();
      const result = await pending;
      await bystanderAnswers();
      return result;
    };

    beforeAll(async () => {
      sys = await startSystem({ SESSIONBOX_RUNTIME: runtime });
      [bystander, victim] = await Promise.all([sys.http.createSession().then((s) => s.id), sys.http.createSession().then((s) => s.id)]);
      expect((await run(bystander, 'n = 0\nn')).result).toBe('0');
    });

    afterAll(async () => {
      const ns = sys.config.namespace;
      const live = await namespaceContainers(ns);
      await sys.stop();
      // Only this run's two sessions may be running before the cleanup removes them.
      expect(live.length).toBe(2);
    });

    // gVisor does not apply "not dumpable" to /proc/<pid>/fd: there the relay (another uid) is out
    // of reach, but the supervisor's worker (the session's uid) is not, nor is the supervisor
    // itself (a known gap: docs/readme-parts/hardening-runner.md). Marked failing until user code
    // runs as another uid than the supervisor.
    const item1 = runtime === 'runsc' ? test.failing : test;
    item1('item 1: a thread left in the kernel cannot open a file operation’s pipes and forge a download', async () => {
      const real = `real-${Math.random().toString(36).slice(2)}`;
      expect((await sys.http.put(`/v1/sessions/${victim}/files/real.txt`, Buffer.from(real), { 'content-type': 'application/octet-stream' })).status).toBe(201);
      // Watches /proc for new processes and tries to write a forged answer into each one's stdout.
      const attack = py`
        import base64, os, time
        me, old, done, opened, errors = os.getpid(), set(os.listdir('/proc')), set(), 0, set()
        forged = base64.b64encode(b'FORGED-BY-SANDBOX').decode()
        line = ('{"ev":"file_chunk","id":null,"dataB64":"%s"}\n{"ev":"file_done","id":null,"path":"real.txt","size":17,"mtimeMs":0}\n' % forged).encode()
        end = time.time() + 6
        while time.time() < end:
            # Every new process, again and again while it lives: the engine's exec helper becomes
            # the file operation's interpreter only at its execve.
            for p in os.listdir('/proc'):
                if not p.isdigit() or p in old or p in done or int(p) == me:
                    continue
                for n in range(10):  # stdout, and any socket or pipe it relays through
                    try:
                        fd = os.open(f'/proc/{p}/fd/{n}', os.O_WRONLY)
                    except OSError as e:
                        errors.add(e.errno)
                        continue
                    opened += 1
                    done.add(p)
                    try:
                        os.write(fd, line)
                    except OSError:
                        pass
                    os.close(fd)
        _result = {'opened': opened, 'errors': sorted(errors)}
      `;
      const downloads: string[] = [];
      const res = await hostile(`import json as _json\n${attack}\n_json.dumps(_result)`, 20_000, async () => {
        for (let i = 0; i < 8; i++) {
          const r = await sys.http.get(`/v1/sessions/${victim}/files/real.txt`);
          downloads.push(`${r.status} ${r.raw.toString('utf8')}`);
        }
      });
      expect(res.status).toBe('succeeded');
      const probe = JSON.parse((res.result as string).slice(1, -1).replace(/\\(.)/g, '$1'));
      expect(downloads).toEqual(Array(8).fill(`200 ${real}`));
      expect(probe.opened).toBe(0);
      // It did see the file operations' processes, and was refused (EACCES), not too late (ENOENT only).
      expect(probe.errors).toContain(13);
    });

    test('item 3: a forged "done" on the control pipe ends neither the run nor its timeout', async () => {
      const forgedDone = String.raw`b'{"ev":"done","status":"succeeded","result":"\'FORGED\'","error":null}\n'`;
      // From the cell itself, then carrying on.
      const direct = await hostile(`import os, time\nos.write(4, ${forgedDone})\nt = time.time()\nwhile time.time() - t < 6: pass\n'real end'`, 1500);
      expect(direct).toMatchObject({ status: 'timed_out', cause: 'timeout' });
      expect(direct.result).not.toBe("'FORGED'");
      // From a thread, with a child that stops and continues the kernel to look idle.
      const tricky = await hostile(
        py`
          import os, signal, threading, time
          def forge():
              os.write(4, ${forgedDone})
              pid = os.fork()
              if pid == 0:
                  os.kill(os.getppid(), signal.SIGSTOP)
                  time.sleep(0.05)
                  os.kill(os.getppid(), signal.SIGCONT)
                  os._exit(0)
          threading.Thread(target=forge).start()
          t = time.time()
          while time.time() - t < 6:
              pass
          'real end'
        `,
        1500,
      );
      expect(tricky).toMatchObject({ status: 'timed_out', cause: 'timeout' });
      expect(tricky.result).not.toBe("'FORGED'");
      // The kernel is idle again and nothing of those runs is left.
      expect(await value(victim, "import os\n_result = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())", 10_000)).toHaveLength(2);
    });

    test('item 10: io_uring, userfaultfd, perf_event_open, the keyring calls and bpf all fail', async () => {
      const res = await hostile(
        py`
          import ctypes, json, os, platform
          libc = ctypes.CDLL(None, use_errno=True)
          buf = ctypes.create_string_buffer(256)
          nrs = {'x86_64': dict(io_uring_setup=425, io_uring_enter=426, io_uring_register=427, userfaultfd=323, perf_event_open=298, keyctl=250, add_key=248, request_key=249, bpf=321),
                 'aarch64': dict(io_uring_setup=425, io_uring_enter=426, io_uring_register=427, userfaultfd=282, perf_event_open=241, keyctl=219, add_key=217, request_key=218, bpf=280)}[platform.machine()]
          args = dict(io_uring_setup=(8, buf), io_uring_enter=(0, 0, 0, 0, None, 0), io_uring_register=(0, 0, None, 0),
                      userfaultfd=(0,), perf_event_open=(buf, 0, -1, -1, 0), keyctl=(0, -3, 0),
                      add_key=(b'user', b'k', b'v', 1, -3), request_key=(b'user', b'k', None, 0), bpf=(0, buf, 120))
          out = {}
          for name, nr in nrs.items():
              r = libc.syscall(nr, *args[name])
              out[name] = 'ok' if r >= 0 else os.strerror(ctypes.get_errno())
          json.dumps(out)
        `,
        20_000,
      );
      expect(res.status).toBe('succeeded');
      const out = JSON.parse((res.result as string).slice(1, -1));
      expect(Object.keys(out).sort()).toEqual(
        ['add_key', 'bpf', 'io_uring_enter', 'io_uring_register', 'io_uring_setup', 'keyctl', 'perf_event_open', 'request_key', 'userfaultfd'],
      );
      for (const [name, outcome] of Object.entries(out)) expect([name, outcome]).not.toEqual([name, 'ok']);
    });

    test('item 11: each session has a uid of its own; one exhausting its inotify instances leaves another untouched', async () => {
      const uid = "import os\n_result = [os.getuid(), os.geteuid(), os.getgid(), os.stat('/work').st_uid, os.stat('/tmp').st_uid]";
      const [v, b] = [await value(victim, uid), await value(bystander, uid)];
      expect(new Set(v).size).toBe(1);
      expect(new Set(b).size).toBe(1);
      expect(v[0]).not.toBe(b[0]);
      expect(v[0]).toBeGreaterThanOrEqual(1_000_000);
      // The victim takes every inotify instance its uid may have and keeps them.
      const taken = await value(
        victim,
        py`
          import ctypes, os
          libc = ctypes.CDLL(None, use_errno=True)
          hog = globals().setdefault('hog', [])
          while len(hog) < 100000:
              fd = libc.inotify_init1(0)
              if fd < 0:
                  break
              hog.append(fd)
          _result = [len(hog), os.strerror(ctypes.get_errno())]
        `,
      );
      expect(taken[0]).toBeGreaterThan(0);
      try {
        await bystanderAnswers();
        const other = await value(
          bystander,
          py`
            import ctypes, os
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(0)
            _result = 'ok' if fd >= 0 else os.strerror(ctypes.get_errno())
            if fd >= 0:
                os.close(fd)
          `,
        );
        expect(other).toBe('ok');
      } finally {
        await run(victim, 'import os\nfor fd in hog: os.close(fd)\nhog.clear()');
      }
      await bystanderAnswers();
    });
  });
}

describeRuntime('runc');
if (!RUNSC_SKIPPED) describeRuntime('runsc');
else {
  describe('hostile code, round 2, under runsc', () => {
    test.skip(`skipped: ${RUNSC_SKIPPED}`, () => undefined);
  });
}
