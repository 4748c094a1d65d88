/** Runs the built CLI as a user would: the bundled command (dist/bin/thinship.js, package.json's bin) in a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './paths.js';

export const cliPath = join(repoRoot, 'dist/bin/thinship.js');

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function startCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; stdin?: 'ignore' | 'pipe'; cwd?: string } = {},
): { child: ChildProcess; result: Promise<CliResult> } {
  const child = spawn(process.execPath, [cliPath, ...args], { env: opts.env ?? process.env, cwd: opts.cwd, stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const result = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, result };
}

export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  return startCli(args, opts).result;
}

/** Quotes a word for bash. */
export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Runs a bash pipeline (pipefail: any stage failing fails it); returns its exit status and stderr. */
export function sh(script: string, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn('bash', ['-o', 'pipefail', '-c', script], { stdio: ['ignore', 'ignore', 'pipe'], env });
    let stderr = '';
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    c.on('close', (code) => resolve({ code, stderr }));
  });
}

/** `send` / `plan` arguments naming an offline pool (a demo pool's files) and its volume size. */
export function offlinePoolArgs(pool: { metadataPath: string; dataPath: string; volumeSizeBytes: number }): string[] {
  return ['--pool-metadata', pool.metadataPath, '--pool-data', pool.dataPath, '--volume-size', String(pool.volumeSizeBytes)];
}
