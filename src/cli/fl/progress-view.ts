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

interface TextOptions {
  /** A bar, on a terminal. */
  readonly bar?: number;
  /** The image ref's last path part only. */
  readonly shortImage?: boolean;
  readonly step?: boolean;
  readonly bytes?: boolean;
}

/** The step and pull part of a line; empty when no reconcile is running. */
function progressText(vm: MicroVM, options: TextOptions): string {
  const { bar, shortImage = false, step = true, bytes = true } = options;
  const status = vm.status;
  const parts: string[] = [];
  if (step && status?.reconcileStep !== undefined && status.reconcileStep !== '') parts.push(`step ${status.reconcileStep}`);
  const pull = status?.pullProgress;
  if (pull !== undefined && pull.image !== '') {
    const image = shortImage ? pull.image.slice(pull.image.lastIndexOf('/') + 1) : pull.image;
    const pct = percent(pull);
    if (bar === undefined || pct === undefined) parts.push(`pulling ${formatPull({ ...pull, image })}`);
    else if (bytes) parts.push(`pulling ${image} ${progressBar(pct, bar)} ${formatPull({ ...pull, image }).slice(image.length + 1)}`);
    else parts.push(`pulling ${image} ${progressBar(pct, bar)} ${pct}%`);
  }
  return parts.join(', ');
}

/** `microvm ns/name (uid)`, as the other messages of fl name a VM. */
export function vmLabel(vm: MicroVM): string {
  return `microvm ${vm.spec?.namespace ?? ''}/${vm.spec?.id ?? ''} (${vm.spec?.uid ?? ''})`;
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
  show(vm: MicroVM): void {
    const state = stateName(vm.status?.state);
    const retry = vm.status?.retry ?? 0;
    const error = vm.status?.lastError ?? '';
    const detail = `${state}${retry > 0 && error !== '' ? ` (retry ${retry}: ${truncate(error, 120)})` : ''}`;
    const head = `${vmLabel(vm)}: ${detail}`;
    const join = (first: string, progress: string): string => (progress !== '' ? `${first}: ${progress}` : first);
    if (!this.tty) {
      const line = join(head, progressText(vm, {}));
      if (line !== this.lastLine) this.sink.write(`${line}\n`);
      this.lastLine = line;
      return;
    }
    // On a terminal the line must fit, bar included: the uid goes first (create printed it on
    // stdout), then the image's registry and repository path, then the step and the byte counts,
    // and only then the end of the line.
    const short = `${vm.spec?.namespace ?? ''}/${vm.spec?.id ?? ''}: ${detail}`;
    const candidates = [
      join(head, progressText(vm, { bar: 20 })),
      join(short, progressText(vm, { bar: 20 })),
      join(short, progressText(vm, { bar: 20, shortImage: true })),
      join(short, progressText(vm, { bar: 20, shortImage: true, step: false })),
      join(short, progressText(vm, { bar: 10, shortImage: true, step: false, bytes: false })),
    ];
    const fitting = candidates.find((c) => c.length < this.columns);
    const last = candidates.at(-1) ?? '';
    const line = fitting ?? `${last.slice(0, Math.max(0, this.columns - 4))}...`;
    // A new state keeps the last line of the one before on screen, as its history.
    if (head !== this.lastHead && this.open) this.end();
    this.lastHead = head;
    if (line === this.lastLine && this.open) return;
    this.lastLine = line;
    this.sink.write(`\r\x1b[K${line}`);
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
