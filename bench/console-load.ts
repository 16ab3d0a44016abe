/**
 * `node --import tsx bench/console-load.ts`: the console's transferred size and time to interactive
 * in headless chromium on this machine (cold cache each time), against a real API on localhost.
 * Time to interactive here: from navigation start until the first screen is drawn with the API's
 * first answer in it (the new-session form), i.e. when a person can use the page.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';
import { loadConfig } from '@sessionbox/core';
import { buildConsole } from '../apps/console/build';
import { startApi } from '../apps/api/src/server';

declare const document: any, performance: any;
const RUNS = Number(process.env.RUNS ?? 7);

async function main() {
  const built = await buildConsole();
  const config = loadConfig({ ...process.env, SESSIONBOX_NAMESPACE: `bench-console-${process.pid}`, SESSIONBOX_PORT: '0', SESSIONBOX_LOG_LEVEL: 'silent' });
  const api = await startApi(config);
  const profile = mkdtempSync(join(tmpdir(), 'sessionbox-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.SESSIONBOX_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`],
  });
  const tti: number[] = [];
  let transferred = 0;
  let requests = 0;
  try {
    for (let i = 0; i < RUNS; i++) {
      const ctx = await browser.createBrowserContext();
      const page = await ctx.newPage();
      await page.setCacheEnabled(false);
      const cdp = await page.createCDPSession();
      await cdp.send('Network.enable');
      const sizes = new Map<string, number>();
      cdp.on('Network.loadingFinished', (e) => sizes.set(e.requestId, e.encodedDataLength));
      await page.goto(`${api.url}/console`);
      await page.waitForSelector('[data-testid=new-session]');
      tti.push(await page.evaluate(() => performance.now()));
      await page.waitForNetworkIdle({ idleTime: 200 });
      transferred = [...sizes.values()].reduce((a, b) => a + b, 0);
      requests = sizes.size;
      await ctx.close();
    }
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
    await api.close();
  }
  const sorted = [...tti].sort((a, b) => a - b);
  const assets = built.files.reduce((n, f) => n + f.gzipBytes, 0);
  console.log(
    JSON.stringify(
      {
        build: { ms: built.ms, files: built.files },
        assetsGzipBytes: assets,
        transferredBytes: transferred,
        requests,
        ttiMs: { median: Math.round(sorted[Math.floor(sorted.length / 2)]), min: Math.round(sorted[0]), max: Math.round(sorted[sorted.length - 1]), runs: RUNS },
      },
      null,
      2,
    ),
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
