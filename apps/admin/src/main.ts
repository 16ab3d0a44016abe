import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { envDefault, isSessionboxError } from '@sessionbox/core';
import { cleanupCommand } from './commands/cleanup';
import { inspectCommand } from './commands/inspect';
import { killCommand } from './commands/kill';
import { lsCommand } from './commands/ls';
import { UsageError, type Io } from './context';
import { AdminApiError } from './ops-target';

export const SCOPE_HELP = `Scope: every command acts on ONE namespace (--namespace, env SESSIONBOX_NAMESPACE, default
"default"): containers labelled sessionbox.managed=true and sessionbox.namespace=<ns>, found by
label filter, and Redis keys sb:<ns>:*. Nothing else (another deployment, a test run, a foreign
container with a similar name) is ever touched.
`;

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

function version(): string {
  try {
    return JSON.parse(readFileSync(join(__dirname, '../../../package.json'), 'utf8')).version;
  } catch {
    return '0.0.0';
  }
}

export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command('sessionbox-admin')
    .description('Operator tools for sessionbox: see every session and container, kill sessions, reclaim what crashes left behind.')
    .version(version())
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out.write(s), writeErr: (s) => io.err.write(s) })
    .showHelpAfterError('(add --help for usage)')
    .addOption(new Option('--namespace <ns>', 'deployment namespace to act on').env('SESSIONBOX_NAMESPACE').default(envDefault('SESSIONBOX_NAMESPACE')))
    .addOption(new Option('--redis-url <url>', 'Redis holding the records').env('SESSIONBOX_REDIS_URL').default(envDefault('SESSIONBOX_REDIS_URL')))
    .addOption(new Option('--url <url>', 'kill and cleanup through this API (its /v1/admin routes) instead of Redis and Docker').env('SESSIONBOX_URL'))
    .addOption(new Option('--key <key>', 'admin key for --url').env('SESSIONBOX_ADMIN_KEY'))
    .option('-v, --verbose', 'log what is done (to stderr)')
    .addHelpText(
      'after',
      `
${SCOPE_HELP}
Docker hosts come from SESSIONBOX_DOCKER_HOSTS (default local=unix:///var/run/docker.sock), like the
api and worker. Exit codes: 0 ok, 1 something failed, 2 usage.

Examples:
  sessionbox-admin ls
  sessionbox-admin inspect <session-id>
  sessionbox-admin kill <session-id>...
  sessionbox-admin cleanup --dry-run
  SESSIONBOX_URL=http://127.0.0.1:8000 sessionbox-admin cleanup --dry-run   # through the API
  npm run admin -- ls --json`,
    );
  for (const cmd of [lsCommand(io, setExit), inspectCommand(io, setExit), killCommand(io, setExit), cleanupCommand(io, setExit)]) {
    cmd.addHelpText('after', `\n${SCOPE_HELP}`);
    program.addCommand(cmd.exitOverride().configureOutput({ writeOut: (s) => io.out.write(s), writeErr: (s) => io.err.write(s) }).showHelpAfterError('(add --help for usage)'));
  }
  return program;
}

/** Runs the CLI and returns its exit code (0 ok, 1 something failed, 2 usage). */
export async function run(argv: string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.ok;
      if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
      return EXIT.usage;
    }
    if (err instanceof UsageError) {
      io.err.write(`error: ${err.message}\n(add --help for usage)\n`);
      return EXIT.usage;
    }
    if (err instanceof AdminApiError) {
      io.err.write(`error: ${err.message}\n`);
      return EXIT.failed;
    }
    const message = isSessionboxError(err) ? `${err.code}: ${err.message}` : ((err as Error)?.message ?? String(err));
    io.err.write(`error: ${message}\n`);
    return EXIT.failed;
  }
}

if (require.main === module) {
  run(process.argv).then(
    (code) => process.exit(code),
    (err) => {
      console.error(err);
      process.exit(EXIT.failed);
    },
  );
}
