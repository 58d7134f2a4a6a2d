/**
 * Run the CLI as an operator would: a child process (`tsx cli/main.ts …`, what `npm run cli`
 * and `npx tsx cli/main.ts` run), with its own environment, standard input and exit status.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../../', import.meta.url));
/** The project's tsx (what `npx tsx` resolves to), without npx's start-up cost. */
export const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  /** Written to standard input, which is then closed (closed at once when absent). */
  input?: string;
  /** Added to the environment; `undefined` removes a variable. */
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DEBUG: undefined, FORCE_COLOR: '0', ...extra };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return env;
}

export function runCli(args: string[], options: RunCliOptions = {}): Promise<CliResult> {
  const child = spawn(tsx, ['cli/main.ts', ...args], {
    cwd: root,
    env: childEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  child.stdin.on('error', () => {}); // the CLI may exit before reading it all
  child.stdin.end(options.input ?? '');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`pgsession ${args.join(' ')} did not exit in time\nstdout: ${stdout}\nstderr: ${stderr}`),
      );
    }, options.timeoutMs ?? 25_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Run the CLI on a pseudo-terminal (util-linux `script`), answering prompts: each `answers`
 * entry is typed once `prompt` appears in the output. Returns everything the terminal showed.
 */
export function runCliOnTty(
  args: string[],
  answers: Array<{ prompt: string; type: string }>,
  options: { env?: Record<string, string | undefined> } = {},
): Promise<{ code: number | null; screen: string }> {
  if (!existsSync('/usr/bin/script')) {
    throw new Error('these tests need util-linux `script` (/usr/bin/script) to give the CLI a terminal');
  }
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const command = [tsx, 'cli/main.ts', ...args].map(quote).join(' ');
  const child = spawn('/usr/bin/script', ['-qfec', command, '/dev/null'], {
    cwd: root,
    env: childEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let screen = '';
  let next = 0;
  let seen = 0;
  const onData = (d: Buffer) => {
    screen += d.toString('utf8');
    const answer = answers[next];
    if (!answer) return;
    const at = screen.indexOf(answer.prompt, seen);
    if (at === -1) return;
    seen = at + answer.prompt.length;
    next++;
    child.stdin.write(answer.type);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pgsession ${args.join(' ')} (on a terminal) did not exit in time:\n${screen}`));
    }, 25_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, screen });
    });
  });
}
