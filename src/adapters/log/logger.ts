// Structured logs with pino: JSON lines (ISO times, level names), or readable text through
// pino-pretty used as an in-process synchronous stream (no transport worker threads in a daemon),
// one line per event in both.
import { isMainThread } from 'node:worker_threads';
import { pino, type DestinationStream, type Level } from 'pino';
import pretty from 'pino-pretty';
import type { Logger } from '../../core/ports.js';

export interface LogOptions {
  readonly format: 'text' | 'json';
  /** 0-1 info, 2-8 debug, 9+ trace (the original's scale). */
  readonly verbosity: number;
  /** `stderr`, `stdout` or a file path. */
  readonly output: string;
}

export interface DaemonLog {
  readonly log: Logger;
  /**
   * Reopens a log file at its path (after logrotate moved it away: SIGHUP); nothing for
   * stderr/stdout. Whether a file was reopened.
   */
  readonly reopen: () => boolean;
}

export function levelFor(verbosity: number): Level {
  if (verbosity >= 9) return 'trace';
  if (verbosity >= 2) return 'debug';
  return 'info';
}

/**
 * stderr/stdout, or a file appended to by sonic-boom (pino's own destination, which can reopen).
 * On a worker thread stderr/stdout are written by fd: a worker's process.stderr is a stream the
 * main thread copies, so its last lines could be lost when the process exits.
 */
function destination(output: string): { stream: NodeJS.WritableStream | pino.DestinationStream; reopen: () => boolean } {
  const fd = output === 'stderr' ? 2 : output === 'stdout' ? 1 : undefined;
  if (fd !== undefined && !isMainThread) return { stream: pino.destination({ fd, sync: true }), reopen: () => false };
  if (output === 'stderr') return { stream: process.stderr, reopen: () => false };
  if (output === 'stdout') return { stream: process.stdout, reopen: () => false };
  const file = pino.destination({ dest: output, append: true, sync: true });
  return {
    stream: file,
    reopen: () => {
      file.reopen();
      return true;
    },
  };
}

export function createDaemonLog(options: LogOptions): DaemonLog {
  const out = destination(options.output);
  const stream: DestinationStream =
    options.format === 'json'
      ? out.stream
      : pretty({
          destination: out.stream,
          sync: true,
          colorize: false,
          singleLine: true,
          translateTime: 'SYS:standard',
          ignore: 'pid,hostname',
          // pino-pretty prints these keys as error objects on lines of their own; ours are strings
          // and belong on the event's line.
          errorLikeObjectKeys: ['err'],
        });
  const log = pino(
    {
      level: levelFor(options.verbosity),
      redact: ['token', 'basicAuthToken', 'authorization'],
      // Level names and ISO-8601 times: what log shippers and people read without a lookup table.
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    stream,
  );
  return { log, reopen: out.reopen };
}

export function createLogger(options: LogOptions): Logger {
  return createDaemonLog(options).log;
}

/** A logger that drops everything (tests, benchmarks). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
