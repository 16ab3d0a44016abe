/** The message of anything thrown, for logs and summaries (a non-Error is stringified). */
export function errMsg(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}
