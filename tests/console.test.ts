import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type BrowserContext, type ElementHandle, type Page } from 'puppeteer-core';
import { buildConsole } from '../apps/console/build';
import { CONSOLE_CSP } from '../apps/api/src/routes/console';
import { Http, namespaceContainers, startSystem, waitFor, type TestSystem } from './helpers/system';

/**
 * The web console in a real browser (Debian's chromium, headless, driven by puppeteer-core) against a
 * real api + worker, real Docker and Redis. Screenshots land in docs/img/ (the README shows them).
 */
const CHROMIUM = process.env.SESSIONBOX_CHROMIUM ?? '/usr/bin/chromium';
const ROOT = join(__dirname, '..');
const SHOTS = join(ROOT, 'docs/img');
const ALICE = 'console-alice-key-0123456789';
const ADMIN = 'console-admin-key-0123456789';

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: scripts/ensure-infra.sh installs chromium`);
const describeBrowser = haveChromium ? describe : describe.skip;

let sys: TestSystem;
let browser: Browser;
let profile: string;
let page: Page;
let sessionId: string;
const pageErrors: string[] = [];

// Code passed to evaluate() runs in the browser; the suite's tsconfig has no DOM lib.
declare const document: any, window: any, navigator: any, sessionStorage: any, DataTransfer: any, DragEvent: any, File: any, Event: any;

async function newPage(context?: BrowserContext): Promise<Page> {
  const p = await (context ?? browser.defaultBrowserContext()).newPage();
  await p.setViewport({ width: 1280, height: 900 });
  p.on('pageerror', (err) => pageErrors.push(String(err)));
  return p;
}

async function signIn(p: Page, key: string) {
  await p.goto(`${sys.url}/console`, { waitUntil: 'load' });
  await p.waitForSelector('[data-testid=signin] input[name=apiKey]');
  await p.type('[data-testid=signin] input[name=apiKey]', key);
  await p.click('[data-testid=signin] button[type=submit]');
}

/** Types code into the notebook's last (empty) cell, runs it with Shift+Enter, waits for the run to end. */
async function runCell(code: string): Promise<ElementHandle<any>> {
  const cells = await page.$$('[data-testid=cell]');
  const cell = cells[cells.length - 1];
  const area = (await cell.$('textarea'))!;
  // The value is set as a paste would; the run is started from the keyboard.
  await area.evaluate((el, c) => {
    const ta = el as any;
    ta.value = c;
    ta.dispatchEvent(new Event('input', { bubbles: true }));
  }, code);
  await area.focus();
  await page.keyboard.down('Shift');
  await page.keyboard.press('Enter');
  await page.keyboard.up('Shift');
  await page.waitForFunction((el) => el.getAttribute('data-running') === 'false' && !!el.querySelector('.outputs:not([data-status=running])'), { timeout: 60_000 }, cell);
  return cell;
}

const text = (el: ElementHandle<any>, sel: string) => el.$eval(sel, (e: any) => String(e.textContent ?? ''));

describeBrowser('console (real browser)', () => {
  beforeAll(async () => {
    const built = await buildConsole();
    expect(built.files.map((f) => f.name)).toEqual(['index.html', 'app.js', 'app.css']);
    sys = await startSystem({ SESSIONBOX_API_KEYS: `alice:${ALICE}`, SESSIONBOX_ADMIN_KEY: ADMIN });
    profile = mkdtempSync(join(tmpdir(), 'sessionbox-chromium-'));
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--user-data-dir=${profile}`,
      ],
    });
    page = await newPage();
    mkdirSync(SHOTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await sys?.stop();
    if (sys) expect(await namespaceContainers(sys.config.namespace)).toEqual([]);
  });

  test('the page and its assets load without a key, under a strict CSP; the API still wants one', async () => {
    const anon = new Http(sys.url);
    const html = await anon.get('/console');
    expect(html.status).toBe(200);
    expect(html.headers.get('content-type')).toMatch(/text\/html/);
    expect(html.headers.get('content-security-policy')).toBe(CONSOLE_CSP);
    expect(CONSOLE_CSP).toContain("script-src 'self'");
    expect(CONSOLE_CSP).not.toContain('unsafe-inline');
    const js = await anon.get('/console/assets/app.js', { 'accept-encoding': 'gzip' });
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect((await anon.get('/console/assets/other.js')).status).toBe(404);
    expect((await anon.get('/v1/sessions')).status).toBe(401);
  });

  test('a wrong key is a clear 401 message, and the key never appears in the URL', async () => {
    await signIn(page, 'not-a-real-key');
    const msg = await page.waitForSelector('[data-testid=auth-error]');
    expect(await msg!.evaluate((e) => e.textContent)).toMatch(/401.*API key/);
    expect(page.url()).toBe(`${sys.url}/console`);
    expect(await page.evaluate(() => sessionStorage.getItem('sessionbox.apiKey'))).toBeNull();
  });

  test('sign in with a key, create a session with TTL, limits and metadata; the TTL counts down', async () => {
    await signIn(page, ALICE);
    await page.waitForSelector('[data-testid=new-session]');
    expect(page.url()).not.toContain(ALICE);
    expect(await page.evaluate(() => sessionStorage.getItem('sessionbox.apiKey'))).toBe(ALICE);
    // alice is no admin: no operator tab.
    expect(await page.$('[data-testid=tab-operator]')).toBeNull();
    await page.$eval('input[name=ttl]', (el) => ((el as any).value = ''));
    await page.type('input[name=ttl]', '300');
    await page.$eval('input[name=memory]', (el) => ((el as any).value = ''));
    await page.type('input[name=memory]', '256');
    await page.type('textarea[name=metadata]', 'purpose=console-test');
    await page.click('[data-testid=create-session]');
    const bar = await page.waitForSelector('[data-testid=session-bar]', { timeout: 60_000 });
    sessionId = (await bar!.evaluate((e) => e.getAttribute('data-session-id')))!;
    const api = new Http(sys.url, { authorization: `Bearer ${ALICE}` });
    const s = (await api.get(`/v1/sessions/${sessionId}`)).body;
    expect(s).toMatchObject({ ttlSeconds: 300, limits: { memoryMb: 256 }, metadata: { purpose: 'console-test' } });

    const first = Number(await page.$eval('[data-testid=ttl]', (e) => e.getAttribute('data-seconds')));
    expect(first).toBeGreaterThan(250);
    expect(first).toBeLessThanOrEqual(300);
    await page.waitForFunction((f) => Number(document.querySelector('[data-testid=ttl]')?.getAttribute('data-seconds')) < f, { timeout: 10_000 }, first);
    expect(await page.$eval('[data-testid=ttl]', (e) => e.textContent)).toMatch(/TTL left: 4m \d\ds/);
  });

  test('a cell prints Japanese text and draws a figure that loads at its natural size', async () => {
    const cell = await runCell(
      "import matplotlib.pyplot as plt\nprint('こんにちは、世界')\nplt.figure(figsize=(4, 3), dpi=100)\nplt.plot([1, 3, 2, 4])\nplt.title('sessionbox')\nplt.show()",
    );
    expect(await text(cell, '[data-testid=stdout]')).toContain('こんにちは、世界');
    const img = await cell.waitForSelector('img[data-testid=figure]');
    await page.waitForFunction((el) => (el as any).complete && (el as any).naturalWidth > 0, {}, img);
    const size = await img!.evaluate((el) => {
      const i = el as any;
      return { natural: [i.naturalWidth, i.naturalHeight], declared: [Number(i.getAttribute('width')), Number(i.getAttribute('height'))], src: i.src };
    });
    expect(size.natural[0]).toBeGreaterThan(100);
    expect(size.declared).toEqual(size.natural);
    expect(size.src).toMatch(/^blob:/);
  });

  test('state persists across two cells; the result is shown apart from stdout and stderr', async () => {
    await runCell("x = 41\nimport sys\nprint('to stderr', file=sys.stderr)");
    const second = await runCell('x + 1');
    expect(await text(second, '[data-testid=result]')).toBe('42');
    const cells = await page.$$('[data-testid=cell]');
    expect(await text(cells[cells.length - 3], '[data-testid=stderr]')).toContain('to stderr');
    expect(await cells[cells.length - 3].$('[data-testid=stdout]')).toBeNull();
  });

  test('an error shows its traceback', async () => {
    const cell = await runCell('def f():\n    return 1 / 0\nf()');
    const tb = await text(cell, '[data-testid=traceback]');
    expect(tb).toContain('ZeroDivisionError');
    expect(tb).toContain('in f');
  });

  test('a file dropped on the page is uploaded and a cell reads it; output files are listed', async () => {
    await page.$eval('[data-testid=dropzone]', (zone) => {
      const dt = new DataTransfer();
      dt.items.add(new File(['city,temp\n東京,21\nOsaka,23\n'], 'weather.csv', { type: 'text/csv' }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await page.waitForFunction(() => document.querySelector('[data-testid=files-note]')?.textContent?.includes('weather.csv'));
    await page.waitForSelector('[data-testid=file-list] a[data-path="weather.csv"]');
    const cell = await runCell("import csv\nrows = list(csv.DictReader(open('weather.csv', encoding='utf-8')))\nprint(rows[0]['city'], sum(int(r['temp']) for r in rows))\nopen('out.txt', 'w').write('made by a cell')");
    expect(await text(cell, '[data-testid=stdout]')).toContain('東京 44');
    await page.waitForSelector('[data-testid=file-list] a[data-path="out.txt"]');
  });

  test('XSS printed by user code stays text; HTML results only render in an empty sandbox', async () => {
    const payload = `<script>document.title='pwned-script'</script><img src=x onerror="document.title='pwned-img'">`;
    const cell = await runCell(`print(${JSON.stringify(payload)})\n${JSON.stringify(`<b>bold</b>${payload}`)}`);
    expect(await text(cell, '[data-testid=stdout]')).toContain(payload);
    expect(await cell.$('.outputs img:not([data-testid=figure])')).toBeNull();
    expect(await cell.$('.outputs script')).toBeNull();
    await (await cell.$('.html-toggle input'))!.click();
    const frame = await cell.waitForSelector('iframe[data-testid=html-frame]');
    expect(await frame!.evaluate((f) => f.getAttribute('sandbox'))).toBe('');
    const inner = await frame!.contentFrame();
    await inner.waitForSelector('b');
    // Give a script or an onerror handler every chance to run: the broken image has failed by now.
    await inner.waitForFunction(() => (document.querySelector('img') as any)?.complete === true);
    expect(await inner.evaluate(() => document.title)).toBe('');
    expect(await page.title()).toBe('sessionbox console');
    expect(pageErrors).toEqual([]);
  });

  test('screenshot of the playground', async () => {
    // A viewport as tall as the page rather than `fullPage`, which leaves the sandboxed (out-of-process) iframe blank.
    const height = await page.evaluate(() => document.documentElement.scrollHeight);
    await page.setViewport({ width: 1280, height });
    await page.screenshot({ path: join(SHOTS, 'console-playground.png') });
    await page.setViewport({ width: 1280, height: 900 });
  });

  test("reopening the page lists the key's live sessions and continues one", async () => {
    await page.goto(`${sys.url}/console`, { waitUntil: 'load' });
    const item = await page.waitForSelector(`[data-testid=session-list] li[data-session-id="${sessionId}"]`);
    expect(await item!.evaluate((e) => e.textContent)).toContain('purpose=console-test');
    await (await item!.$('button'))!.click();
    await page.waitForSelector(`[data-testid=session-bar][data-session-id="${sessionId}"]`);
    const cell = await runCell('x * 2');
    expect(await text(cell, '[data-testid=result]')).toBe('82');
  });

  test('Japanese UI from the browser language, and the toggle back to English', async () => {
    const ctx = await browser.createBrowserContext();
    const ja = await newPage(ctx);
    await ja.evaluateOnNewDocument(() => {
      Object.defineProperty(navigator, 'languages', { get: () => ['ja-JP', 'ja'] });
      Object.defineProperty(navigator, 'language', { get: () => 'ja-JP' });
    });
    await ja.goto(`${sys.url}/console`, { waitUntil: 'load' });
    await ja.waitForFunction(() => document.querySelector('h1')?.textContent === 'sessionbox コンソール');
    expect(await ja.$eval('[data-testid=signin] h2', (e) => e.textContent)).toBe('サインイン');
    await ja.click('[data-testid=lang-toggle]');
    await ja.waitForFunction(() => document.querySelector('h1')?.textContent === 'sessionbox console');
    expect(await ja.evaluate(() => document.documentElement.lang)).toBe('en');
    await ctx.close();
  });

  test('the operator view lists the session with its owner and kills it', async () => {
    const ctx = await browser.createBrowserContext();
    const op = await newPage(ctx);
    await signIn(op, ADMIN);
    await op.click(await op.waitForSelector('[data-testid=tab-operator]').then(() => '[data-testid=tab-operator]'));
    const row = await op.waitForSelector(`[data-testid=admin-sessions] tr[data-session-id="${sessionId}"]`, { timeout: 30_000 });
    expect(await text(row!, '[data-testid=owner]')).toBe('alice');
    const cells = await row!.$$eval('td', (tds) => tds.map((td) => td.textContent ?? ''));
    expect(cells[2]).toBe(sys.config.dockerHosts[0].name);
    expect(cells[3]).toMatch(/ready|busy/);
    expect(cells[7]).toMatch(/MiB \/ 256\.0 MiB/);
    expect(Number(cells[9])).toBeGreaterThanOrEqual(7);
    await op.waitForSelector('[data-testid=hosts] tbody tr');
    expect(await op.$eval('[data-testid=hosts] tbody tr', (e) => e.textContent)).toContain(sys.config.dockerHosts[0].name);
    // CPU in use needs two samples of the container's CPU time: the view's next refresh has them.
    await op.waitForFunction((id) => /%/.test(document.querySelector(`tr[data-session-id="${id}"] [data-testid=cpu]`)?.textContent ?? ''), { timeout: 20_000 }, sessionId);
    await op.waitForSelector('[data-testid=chart-rate] rect');
    await op.waitForSelector('[data-testid=chart-latency] rect');
    await op.screenshot({ path: join(SHOTS, 'console-operator.png'), fullPage: true });

    const kill = (await row!.$('[data-testid=kill]'))!;
    await kill.click();
    await op.waitForFunction((el) => el.textContent === 'Really kill?', {}, kill);
    await kill.click();
    await op.waitForFunction((id) => !document.querySelector(`[data-testid=admin-sessions] tr[data-session-id="${id}"]`), { timeout: 30_000 }, sessionId);
    const gone = await new Http(sys.url, { authorization: `Bearer ${ALICE}` }).get(`/v1/sessions/${sessionId}`);
    expect(gone.status).toBe(410);

    await op.click('[data-testid=cleanup-dry-run]');
    await op.waitForSelector('[data-testid=cleanup-empty], [data-testid=cleanup-apply]');
    await ctx.close();
  });

  test('the admin routes refuse a tenant key (403) and the playground of a killed session says so', async () => {
    const alice = new Http(sys.url, { authorization: `Bearer ${ALICE}` });
    const r = await alice.get('/v1/admin/sessions');
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe('admin_only');
    await waitFor(async () => (await namespaceContainers(sys.config.namespace)).every((c) => c.Labels['sessionbox.session-id'] !== sessionId), 10_000);
  });
});
