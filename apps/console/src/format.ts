export function duration(seconds: number | null): string {
  if (seconds === null) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function bytes(n: number | null): string {
  if (n === null) return '–';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * The string a Python `repr` of a str stands for, when it is one (e.g. a `_repr_html_()` result),
 * else the text itself.
 */
export function unrepr(text: string): string {
  const m = /^(['"])([\s\S]*)\1$/.exec(text);
  if (!m) return text;
  return m[2].replace(/\\(n|t|'|"|\\)/g, (_, c: string) => ({ n: '\n', t: '\t' })[c as 'n' | 't'] ?? c);
}

/** Whether a result looks like an HTML fragment (offered in a sandboxed iframe, never inserted into the page). */
export function looksLikeHtml(text: string | null): boolean {
  if (!text) return false;
  const s = unrepr(text).trim();
  return /^<[a-zA-Z!][\s\S]*>$/.test(s);
}
