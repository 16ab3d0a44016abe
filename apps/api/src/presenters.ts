import { encodeFilePath, type Execution, type ExecutionRecord } from '@sessionbox/core';

export function figureUrl(base: string, sessionId: string, figureId: string) {
  return `${base}/v1/sessions/${sessionId}/figures/${figureId}`;
}

export function fileUrl(base: string, sessionId: string, path: string) {
  return `${base}/v1/sessions/${sessionId}/files/${encodeFilePath(path)}`;
}

export function toApiExecution(rec: ExecutionRecord, base: string): Execution {
  const iso = (ms: number | null) => (ms ? new Date(ms).toISOString() : null);
  return {
    id: rec.id,
    sessionId: rec.sessionId,
    status: rec.status,
    stdout: rec.stdout,
    stderr: rec.stderr,
    result: rec.result,
    error: rec.error,
    figures: rec.figures.map((f) => ({
      id: f.id,
      mimeType: 'image/png' as const,
      url: figureUrl(base, rec.sessionId, f.id),
      width: f.width,
      height: f.height,
    })),
    files: rec.files.map((f) => ({ ...f, url: fileUrl(base, rec.sessionId, f.path) })),
    queuedAt: new Date(rec.queuedAt).toISOString(),
    startedAt: iso(rec.startedAt),
    finishedAt: iso(rec.finishedAt),
    durationMs: rec.startedAt && rec.finishedAt ? rec.finishedAt - rec.startedAt : null,
    timeoutMs: rec.timeoutMs,
    restarted: rec.restarted,
    cause: rec.cause,
    usage: rec.usage,
    stdoutTruncated: rec.stdoutTruncated,
    stderrTruncated: rec.stderrTruncated,
    notes: rec.notes,
    ...(rec.restored ? { restored: true } : {}),
  };
}
