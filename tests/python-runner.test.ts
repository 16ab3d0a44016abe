import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * The runner's own Python tests (images/python-runner/tests), run inside the runner image for its
 * Python stack (numpy, pandas, matplotlib, the CJK fonts), against the runner source of this tree
 * mounted read-only, so that they test the code as it is, not the copy baked into the image.
 */
const DIR = resolve(__dirname, '../images/python-runner');
const IMAGE = process.env.SESSIONBOX_IMAGE ?? 'sessionbox/python-runner:latest';

test('images/python-runner/tests: every test runs (none skipped) and passes', () => {
  const defined = (readFileSync(join(DIR, 'tests/test_runner.py'), 'utf8').match(/^ {4}def test_/gm) ?? []).length;
  expect(defined).toBeGreaterThan(0);
  const r = spawnSync(
    'docker',
    [
      'run', '--rm', '--network=none', '--read-only', '--tmpfs', '/tmp:exec',
      '-v', `${DIR}:/src:ro`, '-w', '/src',
      // a library missing in the image fails the run instead of skipping it
      '-e', 'CI=true',
      '--entrypoint', 'python3', IMAGE, '-m', 'unittest', '-v', 'tests.test_runner',
    ],
    { encoding: 'utf8', timeout: 10 * 60_000 },
  );
  const out = `${r.stdout}${r.stderr}`;
  if (r.status !== 0) throw new Error(`python tests failed (exit ${r.status}):\n${out.slice(-20_000)}`);
  expect(out).toMatch(new RegExp(`^Ran ${defined} tests? in `, 'm'));
  expect(out).toMatch(/^OK$/m);
  expect(out.match(/\.\.\. skipped/g) ?? []).toEqual([]);
}, 11 * 60_000);
