/** Plain-text output: tables, times, and the prune progress bar. */

/** Where the CLI writes and reads; the process's streams unless a test passes others. */
export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

export function processIo(): Io {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

/** Width of a string in terminal columns (code points; good enough for ids, emails and dates). */
function width(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * A left-aligned table with a header row, columns separated by two spaces, no trailing spaces.
 * Cells may not contain newlines (callers pass single-line values).
 */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - width(c))))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

const pad = (n: number) => String(n).padStart(2, '0');

/** `2025-01-31 14:05` in the local time zone (set `TZ` to choose another). */
export function formatTime(date: Date): string {
  if (Number.isNaN(date.getTime())) return '-';
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Characters of a hashed session id shown in tables (as on the "your sessions" page). */
export const SHORT_ID_LENGTH = 12;

export function shortId(id: string): string {
  return id.length > SHORT_ID_LENGTH ? id.slice(0, SHORT_ID_LENGTH) : id;
}

/** Replace control characters so stored values (user agents…) cannot drive the terminal. */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we replace.
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** `1 session`, `2 sessions`. */
export function plural(n: number, word: string, plural = `${word}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? word : plural}`;
}

/**
 * Progress of a job whose total is an estimate: a redrawn bar on a terminal, otherwise one
 * line per update (for logs and pipes).
 */
export class Progress {
  readonly #out: Io['stderr'];
  readonly #tty: boolean;
  readonly #label: string;
  #total: number;
  #drawn = false;

  constructor(out: Io['stderr'], total: number, label: string) {
    this.#out = out;
    this.#tty = out.isTTY === true;
    this.#total = total;
    this.#label = label;
  }

  update(done: number): void {
    // Rows that expired after the estimate was taken can push the count past it.
    if (done > this.#total) this.#total = done;
    const total = this.#total;
    const count = `${done.toLocaleString('en-US')}/${total.toLocaleString('en-US')}`;
    if (!this.#tty) {
      this.#out.write(`${this.#label}: ${count}\n`);
      return;
    }
    const ratio = total > 0 ? done / total : 1;
    const columns = Math.max(10, Math.min(40, (this.#out.columns ?? 80) - 40));
    const filled = Math.round(ratio * columns);
    const bar = `${'█'.repeat(filled)}${'░'.repeat(columns - filled)}`;
    const percent = `${Math.floor(ratio * 100)}%`.padStart(4);
    this.#out.write(`\r\u001b[2K${this.#label} ${bar} ${percent} ${count}`);
    this.#drawn = true;
  }

  /** End the bar's line (terminal only). */
  done(): void {
    if (this.#tty && this.#drawn) this.#out.write('\n');
    this.#drawn = false;
  }
}
