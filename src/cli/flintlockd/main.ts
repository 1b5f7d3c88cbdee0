// `flintlockd`: the daemon's command line. `flintlockd run` loads the config (file, env, flags),
// starts the daemon and stops it cleanly on SIGTERM or SIGINT.
import { Command, Option } from 'commander';
import { createDaemonLog } from '../../adapters/log/logger.js';
import { CONFIG_KEYS, ConfigError, DEFAULT_CONFIG_FILE, IGNORED_KEYS, loadConfig, type Config } from '../../config/config.js';
import { exampleConfig, keyHelp } from '../../config/example.js';
import { startDaemon, type RunningDaemon } from '../../daemon/compose.js';
import { daemonVersion } from '../../daemon/version.js';

const version = daemonVersion;

/** camelCase key commander uses for a --kebab-flag. */
const camel = (key: string): string => key.replace(/-([a-zA-Z])/g, (_m, c: string) => c.toUpperCase());

export async function main(argv: string[]): Promise<number> {
  const program = new Command('flintlockd')
    .description('Flintlock microVM host daemon (TypeScript implementation)')
    .version(`flintlock ${version()}`, '-V, --version', 'print the version')
    .exitOverride();
  program
    .command('example-config')
    .description(`print an example ${DEFAULT_CONFIG_FILE}: every key with its meaning and default`)
    .action(() => {
      process.stdout.write(exampleConfig());
    });
  program
    .command('version')
    .description('print the version')
    .option('--short', 'only the version')
    .action((opts: { short?: boolean }) => {
      process.stdout.write(opts.short === true ? `${version()}\n` : `flintlock ${version()}\n`);
    });

  let exitCode = 0;
  const run = program
    .command('run')
    .description('serve the MicroVM API and reconcile microVMs')
    .option('--config <path>', `config file (default ${DEFAULT_CONFIG_FILE} when it exists)`)
    .addHelpText('after', `\nEvery option is also a config file key and an environment variable (FLINTLOCKD_STATE_DIR for --state-dir).`);
  for (const key of CONFIG_KEYS) run.addOption(new Option(`--${key} [value]`, keyHelp(key)).hideHelp(key in IGNORED_KEYS));
  run.addOption(new Option('-v [value]', 'verbosity (alias of --verbosity)').hideHelp());
  run.action(async (opts: Record<string, string | boolean | undefined>) => {
    // A bare boolean flag (`--insecure`) arrives as true; anything else as the given text.
    const flags: Record<string, string | boolean> = {};
    for (const key of CONFIG_KEYS) {
      const value = opts[camel(key)];
      if (value !== undefined) flags[key] = value;
    }
    if (opts.v !== undefined && flags.verbosity === undefined) flags.verbosity = opts.v === true ? '1' : opts.v;
    let config: Config;
    try {
      config = loadConfig({ ...(typeof opts.config === 'string' ? { file: opts.config } : {}), env: process.env, flags });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      process.stderr.write(`flintlockd: ${e.message}\n`);
      exitCode = 2;
      return;
    }
    const logOptions = { format: config.logFormat, verbosity: config.verbosity, output: config.logOutput } as const;
    const { log, reopen } = createDaemonLog(logOptions);
    let daemon: RunningDaemon | undefined;
    log.info({ version: version(), stateDir: config.stateDir }, 'flintlockd starting');
    // SIGHUP (logrotate's postrotate, `systemctl reload`) reopens log-output when it is a file; it
    // never stops the daemon (Node's default for SIGHUP is to exit).
    process.on('SIGHUP', () => {
      daemon?.reopenLog();
      if (reopen()) log.info({ signal: 'SIGHUP', file: config.logOutput }, `log file ${config.logOutput} reopened`);
      else log.info({ signal: 'SIGHUP' }, `SIGHUP received: logging to ${config.logOutput}, nothing to reopen`);
    });
    // A bug must be seen, but it must not take the API and every VM's supervision down with it.
    process.on('unhandledRejection', (reason) => log.error({ error: String(reason) }, 'unhandled rejection'));
    let running: RunningDaemon;
    try {
      running = await startDaemon(config, log, { workerLog: logOptions });
      daemon = running;
    } catch (e) {
      log.error({ error: (e as Error).message }, `flintlockd failed to start: ${(e as Error).message}`);
      exitCode = 1;
      return;
    }
    await new Promise<void>((resolve) => {
      const shutdown = (signal: string): void => {
        log.info({ signal }, 'shutting down');
        running.stop().then(resolve, (e: unknown) => {
          log.error({ error: String(e) }, 'shutdown failed');
          exitCode = 1;
          resolve();
        });
      };
      process.once('SIGTERM', () => shutdown('SIGTERM'));
      process.once('SIGINT', () => shutdown('SIGINT'));
    });
    log.info({}, 'flintlockd stopped');
  });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    const code = (e as { exitCode?: number }).exitCode;
    return typeof code === 'number' ? (code === 0 ? 0 : 2) : 1;
  }
  return exitCode;
}
