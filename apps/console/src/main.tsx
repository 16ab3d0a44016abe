import { render } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiClient, ApiError } from './api-client';
import { AppContext } from './app-context';
import { initialLang, messages, saveLang, type Lang } from './i18n';
import { OperatorView } from './operator-view';
import { Playground } from './playground';
import './styles.css';

type Phase = 'checking' | 'signin' | 'ready';

function SignIn({ onKey, error }: { onKey(key: string): void; error: string | null }) {
  const t = messages(document.documentElement.lang === 'ja' ? 'ja' : 'en');
  const [key, setKey] = useState('');
  return (
    <form
      class="panel signin"
      data-testid="signin"
      onSubmit={(e) => {
        e.preventDefault();
        if (key.trim()) onKey(key.trim());
      }}
    >
      <h2>{t.signIn}</h2>
      <label>
        {t.apiKey} <input name="apiKey" type="password" autocomplete="off" value={key} onInput={(e) => setKey((e.target as HTMLInputElement).value)} />
      </label>
      <button type="submit">{t.signIn}</button>
      <p class="muted">{t.keyHint}</p>
      {error && (
        <p class="error" role="alert" data-testid="auth-error">
          {error}
        </p>
      )}
    </form>
  );
}

function App() {
  const api = useMemo(() => new ApiClient(), []);
  const [lang, setLang] = useState<Lang>(initialLang());
  const [phase, setPhase] = useState<Phase>('checking');
  const [authError, setAuthError] = useState<string | null>(null);
  const [admin, setAdmin] = useState(false);
  const [tab, setTab] = useState<'playground' | 'operator'>('playground');
  const t = messages(lang);
  useEffect(() => saveLang(lang), [lang]);

  const probe = async () => {
    setPhase('checking');
    try {
      await api.json('GET', '/v1/sessions');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        if (api.key) setAuthError(`${t.badKey} (${err.message})`);
        api.setKey(null);
        return setPhase('signin');
      }
      setAuthError(String((err as Error).message));
      return setPhase('signin');
    }
    setAuthError(null);
    setPhase('ready');
    // The operator tab appears once the key proves to be the admin key; the playground does not wait for it.
    setAdmin(await api.json('GET', '/v1/admin/hosts').then(() => true, () => false));
  };
  useEffect(() => void probe(), []);

  return (
    <AppContext.Provider value={{ api, t }}>
      <header class="top">
        <h1>{t.title}</h1>
        {phase === 'ready' && (
          <nav>
            <button type="button" class={tab === 'playground' ? 'tab active' : 'tab'} onClick={() => setTab('playground')} data-testid="tab-playground">
              {t.playground}
            </button>
            {admin && (
              <button type="button" class={tab === 'operator' ? 'tab active' : 'tab'} onClick={() => setTab('operator')} data-testid="tab-operator">
                {t.operator}
              </button>
            )}
          </nav>
        )}
        <span class="spacer" />
        {phase === 'ready' && !api.key && <span class="muted">{t.openMode}</span>}
        <button type="button" onClick={() => setLang(lang === 'ja' ? 'en' : 'ja')} data-testid="lang-toggle">
          {t.language}
        </button>
        {phase === 'ready' && api.key && (
          <button
            type="button"
            onClick={() => {
              api.setKey(null);
              setAdmin(false);
              setTab('playground');
              void probe();
            }}
            data-testid="sign-out"
          >
            {t.signOut}
          </button>
        )}
      </header>
      <main>
        {phase === 'signin' && (
          <SignIn
            error={authError}
            onKey={(key) => {
              api.setKey(key);
              void probe();
            }}
          />
        )}
        {phase === 'ready' && (tab === 'operator' && admin ? <OperatorView /> : <Playground />)}
      </main>
    </AppContext.Provider>
  );
}

render(<App />, document.getElementById('app')!);
