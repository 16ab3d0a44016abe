import { useEffect, useRef, useState } from 'preact/hooks';
import type { Execution, Figure } from './api-client';
import { useApp } from './app-context';
import { looksLikeHtml, unrepr } from './format';

export interface CellOutput {
  stdout: string;
  stderr: string;
  result: string | null;
  error: Execution['error'];
  figures: Figure[];
  status: string;
  durationMs: number | null;
  failure: string | null;
}

export const emptyOutput = (): CellOutput => ({ stdout: '', stderr: '', result: null, error: null, figures: [], status: 'running', durationMs: null, failure: null });

/** A figure fetched with the key and shown from an object URL. */
function FigureImage({ figure }: { figure: Figure }) {
  const { api } = useApp();
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => {
    let url: string | null = null;
    api.blobUrl(figure.url).then((u) => setSrc((url = u)), () => setSrc(null));
    return () => url && URL.revokeObjectURL(url);
  }, [figure.url]);
  return src ? <img class="figure" src={src} width={figure.width} height={figure.height} alt={`figure ${figure.id}`} data-testid="figure" /> : <div class="figure-placeholder" />;
}

/**
 * HTML made by user code, in an iframe with an empty sandbox (no scripts, no same origin, no forms);
 * the console's Content-Security-Policy applies inside it too.
 */
function SandboxedHtml({ html }: { html: string }) {
  return <iframe class="html-output" sandbox="" srcdoc={html} referrerpolicy="no-referrer" data-testid="html-frame" title="HTML output" />;
}

export function Outputs({ out }: { out: CellOutput }) {
  const { t } = useApp();
  const [asHtml, setAsHtml] = useState(false);
  // Everything user code printed is text: JSX puts it in text nodes, never into innerHTML.
  return (
    <div class="outputs" data-status={out.status}>
      {out.stdout && <pre class="stdout" data-testid="stdout">{out.stdout}</pre>}
      {out.stderr && <pre class="stderr" data-testid="stderr">{out.stderr}</pre>}
      {out.figures.map((f) => (
        <FigureImage key={f.id} figure={f} />
      ))}
      {out.result !== null && (
        <div class="result">
          <span class="label">{t.result}</span>
          <pre data-testid="result">{out.result}</pre>
          {looksLikeHtml(out.result) && (
            <label class="html-toggle">
              <input type="checkbox" checked={asHtml} onChange={(e) => setAsHtml((e.target as HTMLInputElement).checked)} /> {t.showHtml}
            </label>
          )}
          {asHtml && <SandboxedHtml html={unrepr(out.result)} />}
        </div>
      )}
      {out.error && (
        <pre class="traceback" data-testid="traceback">
          {out.error.traceback || `${out.error.name}: ${out.error.value}`}
        </pre>
      )}
      {out.failure && <p class="error" data-testid="cell-failure">{out.failure}</p>}
    </div>
  );
}

export interface CellProps {
  index: number;
  code: string;
  output: CellOutput | null;
  running: boolean;
  autoFocus: boolean;
  onChange(code: string): void;
  onRun(): void;
}

export function NotebookCell(p: CellProps) {
  const { t } = useApp();
  const ref = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    if (p.autoFocus) ref.current?.focus();
  }, [p.autoFocus]);
  return (
    <section class="cell" data-testid="cell" data-running={p.running ? 'true' : 'false'}>
      <div class="cell-head">
        <span class="prompt">[{p.running ? '*' : p.output ? p.index + 1 : ' '}]</span>
        <button type="button" onClick={p.onRun} disabled={p.running}>
          {p.running ? t.running : `▶ ${t.run}`}
        </button>
        <span class="muted">{t.runHint}</span>
        {p.output?.durationMs != null && <span class="muted">{p.output.durationMs} ms</span>}
      </div>
      <textarea
        ref={ref}
        class="code"
        spellcheck={false}
        rows={Math.max(3, p.code.split('\n').length)}
        value={p.code}
        onInput={(e) => p.onChange((e.target as HTMLTextAreaElement).value)}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && e.shiftKey) {
            e.preventDefault();
            if (!p.running) p.onRun();
          }
        }}
      />
      {p.output && <Outputs out={p.output} />}
    </section>
  );
}
