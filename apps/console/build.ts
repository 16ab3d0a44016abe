import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

/** Where the built console lives; apps/api/src/routes/console.ts serves it. */
export const CONSOLE_DIST = join(__dirname, 'dist');

export interface ConsoleBuild {
  outDir: string;
  files: { name: string; bytes: number; gzipBytes: number }[];
  ms: number;
}

/**
 * Bundles src/main.tsx (Preact) into dist/app.js and dist/app.css, copies index.html, and writes a
 * gzip copy of each so the API can send them compressed. Offline: esbuild and preact are local packages.
 */
export async function buildConsole(opts: { minify?: boolean } = {}): Promise<ConsoleBuild> {
  const t0 = Date.now();
  const out = CONSOLE_DIST;
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await build({
    entryPoints: { app: join(__dirname, 'src/main.tsx') },
    bundle: true,
    minify: opts.minify ?? true,
    format: 'iife',
    target: ['es2020'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: out,
    legalComments: 'none',
    logLevel: 'warning',
    tsconfig: join(__dirname, 'tsconfig.json'),
  });
  writeFileSync(join(out, 'index.html'), readFileSync(join(__dirname, 'src/index.html')));
  const files = ['index.html', 'app.js', 'app.css'].map((name) => {
    const data = readFileSync(join(out, name));
    const gz = gzipSync(data, { level: 9 });
    writeFileSync(join(out, `${name}.gz`), gz);
    return { name, bytes: data.length, gzipBytes: gz.length };
  });
  return { outDir: out, files, ms: Date.now() - t0 };
}

if (require.main === module) {
  buildConsole().then(
    (b) => {
      const total = b.files.reduce((s, f) => s + f.gzipBytes, 0);
      console.log(`[sessionbox] console built in ${b.ms} ms: ${b.files.map((f) => `${f.name} ${f.bytes} B`).join(', ')} (${total} B gzipped)`);
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
