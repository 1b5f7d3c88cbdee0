// What `--wait` prints while it waits: the state, the reconcile step the daemon is in, and how far
// an image pull has got (status.reconcile_step, status.pull_progress). On a terminal one line
// updates in place with a progress bar (a new line only when the state changes); otherwise
// (a pipe, a log file, CI) a plain line for each change, so logs read as a history.
import type { ImagePullProgress, MicroVM } from '../../gen/flintlock/types/microvm_pb.js';
import { stateName, truncate } from './output.js';

/** Where the view writes (stderr). */
export interface ProgressSink {
  write(text: string): unknown;
}

const MIB = 1024 * 1024;

export function formatBytes(bytes: bigint | number): string {
  const n = Number(bytes);
  if (n < MIB) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * MIB) return `${(n / MIB).toFixed(1)} MiB`;
  return `${(n / (1024 * MIB)).toFixed(2)} GiB`;
}

/** 0..100, or undefined while the total is not known. */
function percent(pull: ImagePullProgress): number | undefined {
  if (pull.bytesTotal === 0n) return undefined;
  return Math.min(100, Math.floor((Number(pull.bytesDone) * 100) / Number(pull.bytesTotal)));
}

/** `ref 1.2 MiB/5.0 MiB (24%)`, or `ref 1.2 MiB` while the total is not known. */
export function formatPull(pull: ImagePullProgress): string {
  const pct = percent(pull);
  const done = formatBytes(pull.bytesDone);
  return pct === undefined ? `${pull.image} ${done}` : `${pull.image} ${done}/${formatBytes(pull.bytesTotal)} (${pct}%)`;
}

export function progressBar(pct: number, width = 20): string {
  const filled = Math.round((pct / 100) * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

/** The step and pull part of a line; empty when no reconcile is running. */
function progressText(vm: MicroVM, tty: boolean): string {
  const status = vm.status;
  const parts: string[] = [];
  if (status?.reconcileStep !== undefined && status.reconcileStep !== '') parts.push(`step ${status.reconcileStep}`);
  const pull = status?.pullProgress;
  if (pull !== undefined && pull.image !== '') {
    const pct = percent(pull);
    parts.push(
      tty && pct !== undefined ? `pulling ${pull.image} ${progressBar(pct)} ${formatPull(pull).slice(pull.image.length + 1)}` : `pulling ${formatPull(pull)}`,
    );
  }
  return parts.join(', ');
}

export class WaitView {
  private lastLine = '';
  private lastHead = '';
  /** A terminal line is being updated (no newline after it yet). */
  private open = false;

  constructor(
    private readonly sink: ProgressSink,
    private readonly tty: boolean,
    private readonly columns = 80,
  ) {}

  /** The VM as last polled: prints what changed. */
  show(label: string, vm: MicroVM): void {
    const state = stateName(vm.status?.state);
    const retry = vm.status?.retry ?? 0;
    const error = vm.status?.lastError ?? '';
    const head = `${label}: ${state}${retry > 0 && error !== '' ? ` (retry ${retry}: ${truncate(error, 120)})` : ''}`;
    const progress = progressText(vm, this.tty);
    const line = progress !== '' ? `${head}: ${progress}` : head;
    if (!this.tty) {
      if (line !== this.lastLine) this.sink.write(`${line}\n`);
      this.lastLine = line;
      return;
    }
    // A new state keeps the last line of the one before on screen, as its history.
    if (head !== this.lastHead && this.open) this.end();
    this.lastHead = head;
    if (line === this.lastLine && this.open) return;
    this.lastLine = line;
    this.sink.write(`\r\x1b[K${line.length < this.columns ? line : `${line.slice(0, this.columns - 4)}...`}`);
    this.open = true;
  }

  /** A message that is not progress (a reconnect, the result): the updating line ends first. */
  message(text: string): void {
    this.end();
    this.sink.write(`${text}\n`);
    this.lastLine = '';
    this.lastHead = '';
  }

  /** Ends the updating line, if there is one. */
  end(): void {
    if (!this.open) return;
    this.sink.write('\n');
    this.open = false;
  }
}
