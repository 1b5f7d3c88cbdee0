// `fl microvm logs --tail N`: the last N lines of what the daemon sends first. GetMicroVMLogs
// counts its tail in bytes; fl asks for more than N lines can need (a console line is rarely over
// a KiB) and keeps the last N lines of the first part of the answer: all of it without --follow,
// the burst before the first quiet moment with it (the daemon sends the tail at once, then polls
// the file), after which everything is passed through as it comes.

/** Bytes asked for per line wanted, and at most in all. */
const BYTES_PER_LINE = 1024;
const MAX_TAIL_BYTES = 4 * 1024 * 1024;
/** A pause this long in a follow stream ends its first burst. */
const QUIET_MS = 150;

export class TailLines {
  private pending: string[] = [];
  private cutting: boolean;
  private quiet: NodeJS.Timeout | undefined;

  constructor(
    private readonly lines: number,
    private readonly out: (text: string) => void,
  ) {
    this.cutting = lines > 0;
  }

  /** The tail_bytes to ask the daemon for (0: all of the log). */
  get bytesToAsk(): number {
    return this.lines > 0 ? Math.min(this.lines * BYTES_PER_LINE, MAX_TAIL_BYTES) : 0;
  }

  write(text: string): void {
    if (!this.cutting) {
      this.out(text);
      return;
    }
    this.pending.push(text);
    if (this.quiet !== undefined) clearTimeout(this.quiet);
    this.quiet = setTimeout(() => this.flush(), QUIET_MS);
  }

  /** Writes the last lines of what was held back; from now on text passes through. */
  flush(): void {
    if (this.quiet !== undefined) clearTimeout(this.quiet);
    this.quiet = undefined;
    if (!this.cutting) return;
    this.cutting = false;
    const text = this.pending.join('');
    this.pending = [];
    this.out(lastLines(text, this.lines));
  }

  stop(): void {
    if (this.quiet !== undefined) clearTimeout(this.quiet);
    this.quiet = undefined;
  }
}

/** The last `n` lines of `text` (a last line without its newline counts as a line). */
export function lastLines(text: string, n: number): string {
  let start = text.endsWith('\n') ? text.length - 1 : text.length;
  for (let seen = 0; seen < n; seen++) {
    if (start <= 0) return text;
    const newline = text.lastIndexOf('\n', start - 1);
    if (newline < 0) return text;
    start = newline;
  }
  return text.slice(start + 1);
}
