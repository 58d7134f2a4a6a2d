/**
 * New passwords for `user add` and `user passwd`: one line from standard input when it is not a
 * terminal (scripts, `printf '%s\n' "$PW" | pgsession user add …`), else a prompt that does not
 * echo, asked twice. The password is taken exactly as typed (only the line break ends it) and
 * checked against the library's policy before anything is written: here the rules that need no
 * network (length, common list, context words, the user's email), so a terminal user hears of
 * them before typing it twice; the repository checks everything again, the breached-password
 * check included, when it stores the password.
 */
import type { ReadStream } from 'node:tty';
import { passwordProblem as basicPasswordProblem } from '../src/auth/index.js';
import { CliError, InterruptedError } from './errors.js';
import type { Io } from './output.js';

/** Longest standard input read (a password is at most 1024 characters: 4 KiB of UTF-8). */
const MAX_STDIN_BYTES = 64 * 1024;

/** The first line of standard input, without its line break. */
export async function readPasswordFromStdin(stdin: Io['stdin']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    chunks.push(buf);
    size += buf.length;
    // One line is all we need; do not wait for the writer to close a pipe it keeps open.
    if (buf.includes(0x0a) || size > MAX_STDIN_BYTES) break;
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.length === 0) {
    throw new CliError(
      'no password on standard input: pipe it as one line, or run the command in a terminal to be prompted',
    );
  }
  const newline = text.indexOf('\n');
  const line = newline === -1 ? text : text.slice(0, newline);
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: escape sequences are what we remove.
const ESCAPE_SEQUENCE = /\u001b(\[[0-9;?]*[ -/]*[@-~]|O.|.)/g;

/**
 * Ask for a secret on a terminal without echoing it. Backspace deletes, Ctrl-U clears, Enter
 * ends, Ctrl-C interrupts, Ctrl-D on an empty line gives up; arrow keys and other escape
 * sequences are ignored.
 */
export function promptHidden(question: string, stdin: ReadStream, out: Io['stderr']): Promise<string> {
  return new Promise((resolve, reject) => {
    // Echo off before the question shows, so nothing typed after it is ever echoed.
    const wasRaw = stdin.isRaw;
    stdin.setRawMode(true);
    out.write(question);
    stdin.setEncoding('utf8');
    stdin.resume();
    let value: string[] = [];
    const finish = (err?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(wasRaw);
      stdin.pause();
      out.write('\n');
      if (err) reject(err);
      else resolve(value.join(''));
    };
    const onData = (chunk: string | Buffer) => {
      const text = String(chunk).replace(ESCAPE_SEQUENCE, '');
      for (const ch of text) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003') return finish(new InterruptedError());
        if (ch === '\u0004') {
          if (value.length === 0) return finish(new CliError('no password entered'));
          continue;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch === '\u0015') value = [];
        else if (ch >= ' ') value.push(ch);
      }
    };
    stdin.on('data', onData);
  });
}

/** The policy's synchronous rules: the problem in words, or null. */
export type PasswordCheck = (password: string) => string | null;

/** A new password, policy-checked: from standard input, or prompted for twice on a terminal. */
export async function readNewPassword(
  io: Io,
  what = 'Password',
  passwordProblem: PasswordCheck = basicPasswordProblem,
): Promise<string> {
  const stdin = io.stdin as Io['stdin'] & Partial<ReadStream>;
  if (stdin.isTTY && typeof stdin.setRawMode === 'function') {
    const first = await promptHidden(`${what}: `, stdin as ReadStream, io.stderr);
    const problem = passwordProblem(first);
    if (problem) throw new CliError(`${problem}; nothing was changed`);
    const again = await promptHidden(`Repeat the ${what.toLowerCase()}: `, stdin as ReadStream, io.stderr);
    if (again !== first) throw new CliError('the two passwords do not match; nothing was changed');
    return first;
  }
  const password = await readPasswordFromStdin(io.stdin);
  const problem = passwordProblem(password);
  if (problem) throw new CliError(`${problem}; nothing was changed`);
  return password;
}
