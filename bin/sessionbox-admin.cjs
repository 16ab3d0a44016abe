#!/usr/bin/env node
'use strict';
// Runs the TypeScript sources directly (tsx), so the CLI works on a fresh clone with no build step,
// from any working directory: paths are resolved from this package, not from the caller's cwd.
const path = require('node:path');

const root = path.resolve(__dirname, '..');
process.env.TSX_TSCONFIG_PATH = process.env.TSX_TSCONFIG_PATH || path.join(root, 'tsconfig.json');
require('tsx/cjs');
const { run } = require(path.join(root, 'apps/admin/src/main.ts'));

run(process.argv).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
