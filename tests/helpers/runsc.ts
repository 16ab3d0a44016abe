import { execFileSync } from 'node:child_process';

/** Why the runsc (gVisor) half of a suite cannot run here, or null when it can (registered and able to start a container). */
export function runscUnavailable(): string | null {
  let runtimes: string[] = [];
  try {
    runtimes = Object.keys(JSON.parse(execFileSync('docker', ['info', '--format', '{{json .Runtimes}}'], { encoding: 'utf8' })));
  } catch {
    // no engine: the runc half fails on its own
  }
  if (!runtimes.includes('runsc')) {
    return 'runsc (gVisor) is not registered with the Docker engine (SESSIONBOX_INSTALL_RUNSC=1 bash scripts/ensure-infra.sh installs it)';
  }
  try {
    const image = process.env.SESSIONBOX_IMAGE ?? 'sessionbox/python-runner:latest';
    execFileSync('docker', ['run', '--rm', '--runtime=runsc', '--network=none', '--entrypoint=true', image], { stdio: 'pipe', timeout: 60_000 });
    return null;
  } catch (err) {
    return `runsc is registered but cannot start a container here: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim().split('\n')[0]}`;
  }
}

/**
 * The reason `suite`'s runsc half is skipped, or null when it runs. CI installs runsc
 * (scripts/ensure-infra.sh), so there a missing runsc is an error, never a silent skip.
 */
export function runscSkipReason(suite: string): string | null {
  const reason = runscUnavailable();
  if (reason && process.env.CI === 'true') throw new Error(`${suite} needs runsc in CI: ${reason}`);
  if (reason) console.warn(`${suite}: the runsc half is skipped: ${reason}`);
  return reason;
}

/** Why whole-container checkpoints cannot run here (the engine's `experimental` is off), or null when they can. */
export function checkpointUnavailable(): string | null {
  try {
    const on = execFileSync('docker', ['info', '--format', '{{.ExperimentalBuild}}'], { encoding: 'utf8' }).trim();
    return on === 'true' ? null : 'the Docker engine runs without "experimental": true (scripts/ensure-infra.sh sets it in daemon.json), so it cannot checkpoint';
  } catch (err) {
    return `docker info failed: ${(err as Error).message.split('\n')[0]}`;
  }
}

/** Python source from an indented template (raw: backslashes reach Python as written). */
export function py(strings: TemplateStringsArray, ...values: unknown[]): string {
  const text = String.raw({ raw: strings.raw }, ...values).replace(/^\n/, '');
  const indent = Math.min(...text.split('\n').filter((l) => l.trim()).map((l) => /^ */.exec(l)![0].length));
  return text
    .split('\n')
    .map((l) => l.slice(indent))
    .join('\n')
    .trimEnd();
}
