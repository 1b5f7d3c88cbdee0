// Structured logs with pino: JSON lines, or readable text through pino-pretty used as an
// in-process synchronous stream (no transport worker threads in a daemon).
import { createWriteStream } from 'node:fs';
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

export function levelFor(verbosity: number): Level {
  if (verbosity >= 9) return 'trace';
  if (verbosity >= 2) return 'debug';
  return 'info';
}

function destination(output: string): NodeJS.WritableStream {
  if (output === 'stderr') return process.stderr;
  if (output === 'stdout') return process.stdout;
  return createWriteStream(output, { flags: 'a' });
}

export function createLogger(options: LogOptions): Logger {
  const out = destination(options.output);
  const stream: DestinationStream =
    options.format === 'json'
      ? out
      : pretty({ destination: out, sync: true, colorize: false, singleLine: true, translateTime: 'SYS:standard', ignore: 'pid,hostname' });
  return pino({ level: levelFor(options.verbosity), redact: ['token', 'basicAuthToken', 'authorization'] }, stream);
}

/** A logger that drops everything (tests, benchmarks). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
