import { useEffect, useState } from 'preact/hooks';
import { ApiError, type OutputFile, type Session } from './api-client';
import { useApp } from './app-context';
import { bytes, duration } from './format';
import { NotebookCell, emptyOutput, type CellOutput } from './notebook-cell';

interface Cell {
  id: number;
  code: string;
  output: CellOutput | null;
  running: boolean;
}

let nextCellId = 1;
const newCell = (code = ''): Cell => ({ id: nextCellId++, code, output: null, running: false });
const errText = (err: unknown) => (err instanceof ApiError ? `${err.status} ${err.code}: ${err.message}` : String((err as Error)?.message ?? err));

function parseMetadata(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

function NewSessionForm({ onCreated }: { onCreated(s: Session): void }) {
  const { api, t } = useApp();
  const [ttl, setTtl] = useState('600');
  const [mem, setMem] = useState('512');
  const [cpus, setCpus] = useState('1');
  const [meta, setMeta] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = { ttlSeconds: Number(ttl), limits: { memoryMb: Number(mem), cpus: Number(cpus) }, metadata: parseMetadata(meta) };
      onCreated(await api.json<Session>('POST', '/v1/sessions', body));
    } catch (err) {
      setError(errText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="panel new-session" onSubmit={submit} data-testid="new-session">
      <h2>{t.newSession}</h2>
      <label>
        {t.ttl} <input name="ttl" type="number" min="10" max="86400" value={ttl} onInput={(e) => setTtl((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        {t.memory} <input name="memory" type="number" min="64" value={mem} onInput={(e) => setMem((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        {t.cpus} <input name="cpus" type="number" min="0.05" step="0.05" value={cpus} onInput={(e) => setCpus((e.target as HTMLInputElement).value)} />
      </label>
      <label class="wide">
        {t.metadata}
        <textarea name="metadata" rows={2} value={meta} onInput={(e) => setMeta((e.target as HTMLTextAreaElement).value)} />
      </label>
      <button type="submit" disabled={busy} data-testid="create-session">
        {t.create}
      </button>
      {error && <p class="error">{error}</p>}
    </form>
  );
}

function useNow(stepMs = 1000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const i = setInterval(() => setNow(Date.now()), stepMs);
    return () => clearInterval(i);
  }, []);
  return now;
}

function TtlCountdown({ expiresAt }: { expiresAt: string }) {
  const { t } = useApp();
  const left = (Date.parse(expiresAt) - useNow()) / 1000;
  return (
    <span class={left < 60 ? 'ttl warn' : 'ttl'} data-testid="ttl" data-seconds={Math.max(0, Math.round(left))}>
      {t.ttlLeft}: {left > 0 ? duration(left) : t.expired}
    </span>
  );
}

function FilesPanel({ session, version, onUploaded }: { session: Session; version: number; onUploaded(): void }) {
  const { api, t } = useApp();
  const [files, setFiles] = useState<OutputFile[]>([]);
  const [over, setOver] = useState(false);
  const [note, setNote] = useState<string | null>(null);
  useEffect(() => {
    api.json<{ files: OutputFile[] }>('GET', `/v1/sessions/${session.id}/files`).then(
      (r) => setFiles(r.files),
      (err) => setNote(errText(err)),
    );
  }, [session.id, version]);
  const upload = async (list: FileList | File[]) => {
    try {
      for (const f of Array.from(list)) {
        const path = f.name.split('/').map(encodeURIComponent).join('/');
        await api.raw('PUT', `/v1/sessions/${session.id}/files/${path}`, f, { 'Content-Type': 'application/octet-stream' });
        setNote(`${t.uploaded}: ${f.name}`);
      }
    } catch (err) {
      setNote(errText(err));
    }
    onUploaded();
  };
  const download = async (f: OutputFile) => {
    const url = await api.blobUrl(f.url);
    const a = document.createElement('a');
    a.href = url;
    a.download = f.path.split('/').pop() ?? 'file';
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };
  return (
    <aside class="panel files">
      <h2>{t.files}</h2>
      <div
        class={over ? 'dropzone over' : 'dropzone'}
        data-testid="dropzone"
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          if (e.dataTransfer?.files.length) void upload(e.dataTransfer.files);
        }}
      >
        {t.dropHere} <input type="file" multiple onChange={(e) => (e.target as HTMLInputElement).files && upload((e.target as HTMLInputElement).files!)} />
      </div>
      {note && <p class="muted" data-testid="files-note">{note}</p>}
      {files.length === 0 ? (
        <p class="muted">{t.noFiles}</p>
      ) : (
        <ul data-testid="file-list">
          {files.map((f) => (
            <li key={f.path}>
              <a
                href={`#download:${encodeURIComponent(f.path)}`}
                data-path={f.path}
                onClick={(e) => {
                  e.preventDefault();
                  void download(f);
                }}
              >
                {f.path}
              </a>{' '}
              <span class="muted">{bytes(f.size)}</span>
            </li>
          ))}
        </ul>
      )}
    </aside>
  );
}

function Notebook({ session, onActivity }: { session: Session; onActivity(): void }) {
  const { api } = useApp();
  const [cells, setCells] = useState<Cell[]>([newCell()]);
  const [focus, setFocus] = useState(cells[0].id);
  const update = (id: number, f: (c: Cell) => Cell) => setCells((cs) => cs.map((c) => (c.id === id ? f(c) : c)));

  const run = async (cell: Cell) => {
    let out = emptyOutput();
    const set = (o: Partial<CellOutput>) => {
      out = { ...out, ...o };
      update(cell.id, (c) => ({ ...c, output: out }));
    };
    update(cell.id, (c) => ({ ...c, running: true, output: out }));
    try {
      await api.execute(session.id, cell.code, (ev) => {
        if (ev.event === 'stdout') set({ stdout: out.stdout + ev.data.text });
        else if (ev.event === 'stderr') set({ stderr: out.stderr + ev.data.text });
        else if (ev.event === 'figure') set({ figures: [...out.figures, ev.data] });
        else if (ev.event === 'done') {
          const x = ev.data;
          set({ stdout: x.stdout, stderr: x.stderr, result: x.result, error: x.error, figures: x.figures, status: x.status, durationMs: x.durationMs });
        } else if (ev.event === 'error') set({ failure: `${ev.data.error.code}: ${ev.data.error.message}`, status: 'failed' });
      });
    } catch (err) {
      set({ failure: errText(err), status: 'failed' });
    }
    update(cell.id, (c) => ({ ...c, running: false }));
    setCells((cs) => {
      if (cs[cs.length - 1].id !== cell.id) return cs;
      const c = newCell();
      setFocus(c.id);
      return [...cs, c];
    });
    onActivity();
  };

  return (
    <div class="notebook" data-testid="notebook">
      {cells.map((c, i) => (
        <NotebookCell
          key={c.id}
          index={i}
          code={c.code}
          output={c.output}
          running={c.running}
          autoFocus={focus === c.id}
          onChange={(code) => update(c.id, (x) => ({ ...x, code }))}
          onRun={() => void run({ ...c, code: cells.find((x) => x.id === c.id)?.code ?? c.code })}
        />
      ))}
    </div>
  );
}

export function Playground() {
  const { api, t } = useApp();
  const [sessions, setSessions] = useState<Session[] | null>(null);
  const [current, setCurrent] = useState<Session | null>(null);
  const [filesVersion, setFilesVersion] = useState(0);
  const [error, setError] = useState<string | null>(null);

  const loadList = () =>
    api.json<{ sessions: Session[] }>('GET', '/v1/sessions').then(
      (r) => setSessions(r.sessions.filter((s) => s.status !== 'terminated')),
      (err) => setError(errText(err)),
    );
  useEffect(() => void loadList(), []);

  const refreshCurrent = async () => {
    if (!current) return;
    try {
      setCurrent(await api.json<Session>('GET', `/v1/sessions/${current.id}`));
    } catch (err) {
      setError(errText(err));
    }
    setFilesVersion((v) => v + 1);
  };

  const remove = async () => {
    if (!current) return;
    try {
      await api.json('DELETE', `/v1/sessions/${current.id}`);
      setCurrent(null);
      void loadList();
    } catch (err) {
      setError(errText(err));
    }
  };

  if (!current) {
    return (
      <div class="playground">
        <NewSessionForm
          onCreated={(s) => {
            setCurrent(s);
            void loadList();
          }}
        />
        <section class="panel">
          <h2>{t.yourSessions}</h2>
          {error && <p class="error">{error}</p>}
          {sessions && sessions.length === 0 && <p class="muted">{t.none}</p>}
          <ul class="session-list" data-testid="session-list">
            {sessions?.map((s) => (
              <li key={s.id} data-session-id={s.id}>
                <code>{s.id}</code> <span class="muted">{Object.entries(s.metadata).map(([k, v]) => `${k}=${v}`).join(' ')}</span>{' '}
                <button type="button" onClick={() => setCurrent(s)}>
                  {t.continue}
                </button>
              </li>
            ))}
          </ul>
        </section>
      </div>
    );
  }

  return (
    <div class="playground">
      <header class="panel session-bar" data-testid="session-bar" data-session-id={current.id}>
        <strong>{t.session}</strong> <code>{current.id}</code> <span class="muted">{current.host}</span> <TtlCountdown expiresAt={current.expiresAt} />
        <button type="button" class="danger" onClick={remove} data-testid="delete-session">
          {t.delete}
        </button>
        {error && <p class="error">{error}</p>}
      </header>
      <div class="workbench">
        <Notebook key={current.id} session={current} onActivity={refreshCurrent} />
        <FilesPanel session={current} version={filesVersion} onUploaded={() => setFilesVersion((v) => v + 1)} />
      </div>
    </div>
  );
}
