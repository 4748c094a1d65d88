/**
 * The one wrapper around execa for every external command (lvs, lvchange,
 * dmsetup, thin_dump, thin_delta, thin_restore, ...). It logs argv, captures
 * stderr (capped), records duration, exit code and signal, honours an
 * AbortSignal, and turns failures into a typed ToolError. Per-tool
 * classifiers (known-errors.ts) turn known stderr into specific error codes.
 */
import { execa, type ResultPromise, type Result } from 'execa';
import { PassThrough, Readable } from 'node:stream';
import { openSync, closeSync, mkdtempSync, rmSync } from 'node:fs';
import { read as fsRead } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ThinshipError, type ErrorCode } from '../errors.js';
import { log } from '../log.js';
import { installHint } from './packages.js';

/** stderr kept in errors and logs; tools such as thin_delta print usage text on error. */
const STDERR_CAP_BYTES = 16 * 1024;

export interface ToolResult {
  tool: string;
  argv: string[];
  exitCode: number | undefined;
  /** e.g. "SIGKILL" when the tool was killed by a signal. */
  signal: string | undefined;
  /** execa's: stopped through our AbortSignal (cancelSignal). */
  isCanceled: boolean;
  /** execa's: stdout or stderr outgrew maxBuffer (the tool was stopped). */
  isMaxBuffer: boolean;
  /** execa's `code`: the errno of a spawn that failed (ENOENT: not installed), else undefined. */
  spawnErrno: string | undefined;
  durationMs: number;
  stdout: string;
  stderr: string;
}

/** A failed external command. `code` is TOOL_FAILED unless a classifier knew better. */
export class ToolError extends ThinshipError {
  readonly tool: string;
  readonly argv: string[];
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly stderr: string;
  constructor(code: ErrorCode, message: string, r: Pick<ToolResult, 'tool' | 'argv' | 'exitCode' | 'signal' | 'stderr'>, retryable = false) {
    super(code, message, { retryable, details: { tool: r.tool, argv: r.argv, exitCode: r.exitCode, signal: r.signal, stderr: r.stderr } });
    this.name = 'ToolError';
    this.tool = r.tool;
    this.argv = r.argv;
    this.exitCode = r.exitCode;
    this.signal = r.signal;
    this.stderr = r.stderr;
  }
}

/** Turns a failed result into a specific error, or undefined to fall back to the generic one. */
export type Classifier = (r: ToolResult) => ToolError | undefined;

export interface RunOptions {
  signal?: AbortSignal;
  /** Known-stderr classifier for this tool. */
  classify?: Classifier;
  /** Exit codes that are not failures (default: only 0). */
  okExitCodes?: number[];
  env?: Record<string, string>;
}

/** Where Debian puts admin tools (thin_*, lvs, dmsetup, losetup): not on an ordinary user's PATH. */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/**
 * The environment a tool runs in: the inherited PATH plus the sbin directories
 * it lacks, so a user's `thinship demo` finds /usr/sbin/thin_restore. A PATH
 * the caller sets is kept as given.
 */
export function toolEnv(env: Record<string, string> | undefined): Record<string, string> | undefined {
  if (env?.PATH !== undefined) return env;
  // eslint-disable-next-line no-restricted-properties -- the child's environment is inherited by design (execa extendEnv), read per call
  const path = process.env.PATH ?? '';
  const have = new Set(path.split(':'));
  const extra = SBIN_DIRS.filter((d) => !have.has(d));
  return extra.length === 0 ? env : { ...env, PATH: [...(path === '' ? [] : [path]), ...extra].join(':') };
}

function cap(s: string): string {
  return s.length > STDERR_CAP_BYTES ? s.slice(0, STDERR_CAP_BYTES) + `\n[... ${s.length - STDERR_CAP_BYTES} more bytes of stderr cut]` : s;
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

/** Our ToolResult from execa's result: its own fields, never its message text. */
function toResult(tool: string, args: string[], r: Result): ToolResult {
  // execa's `code` is a string errno for a failed spawn; for a cancelled run it is not a string.
  const code: unknown = r.code;
  return {
    tool,
    argv: [tool, ...args],
    exitCode: r.exitCode,
    signal: r.signal,
    isCanceled: r.isCanceled,
    isMaxBuffer: r.isMaxBuffer,
    spawnErrno: r.exitCode === undefined && r.signal === undefined && typeof code === 'string' ? code : undefined,
    durationMs: Math.round(r.durationMs),
    stdout: typeof r.stdout === 'string' ? r.stdout : '',
    stderr: cap(typeof r.stderr === 'string' ? r.stderr : ''),
  };
}

/** The error for a failed result (undefined when it succeeded), after the classifier had its say. */
function failureOf(r: ToolResult, opts: RunOptions): ToolError | undefined {
  if (r.spawnErrno === 'ENOENT') return new ToolError('TOOL_MISSING', `${r.tool} is not installed (not found on PATH)${installHint(r.tool)}`, r);
  if (r.spawnErrno !== undefined) return new ToolError('TOOL_FAILED', `cannot start ${r.tool}: ${r.spawnErrno} (${r.argv.join(' ')})`, r);
  const ok = r.signal === undefined && !r.isMaxBuffer && (opts.okExitCodes ?? [0]).includes(r.exitCode ?? -1);
  if (ok) return undefined;
  if (r.isCanceled) return new ToolError('ABORTED', `${r.tool} was cancelled`, r);
  if (r.isMaxBuffer) return new ToolError('TOOL_FAILED', `${r.argv.join(' ')}: output larger than ${RUN_MAX_BUFFER_BYTES} bytes; the tool was stopped`, r);
  const specific = opts.classify?.(r);
  if (specific) return specific;
  if (r.signal !== undefined) return new ToolError('TOOL_KILLED', `${r.tool} was killed by ${r.signal} (${r.argv.join(' ')})`, r, true);
  const why = firstLine(r.stderr);
  return new ToolError('TOOL_FAILED', `${r.argv.join(' ')} exited with status ${r.exitCode}${why ? `: ${why}` : ''}`, r);
}

function logResult(r: ToolResult): void {
  log.debug({ argv: r.argv, exitCode: r.exitCode, signal: r.signal, ms: r.durationMs, stderr: r.stderr || undefined }, 'exec');
}

/** The most a buffered tool (runTool) may print on stdout: lvs, dmsetup status... print lines, not dumps. */
const RUN_MAX_BUFFER_BYTES = 256 * 1024 * 1024;

/** Runs a tool to completion, buffering stdout. Throws ToolError on failure. */
export async function runTool(tool: string, args: string[], opts: RunOptions = {}): Promise<ToolResult> {
  // reject: false: a failed run (not installed, exit status, signal, cancel) is a result, not a throw.
  const raw = await execa(tool, args, {
    reject: false,
    stdin: 'ignore',
    cancelSignal: opts.signal,
    env: toolEnv(opts.env),
    extendEnv: true,
    stripFinalNewline: false,
    maxBuffer: RUN_MAX_BUFFER_BYTES,
  });
  const r = toResult(tool, args, raw);
  logResult(r);
  const err = failureOf(r, opts);
  if (err) throw err;
  return r;
}

export interface StreamingTool {
  /** The tool's stdout, to be consumed as it is produced. */
  stdout: Readable;
  /** Settles when the tool exits: the result, or a ToolError. */
  done: Promise<ToolResult>;
  /** Kills the tool (SIGTERM), e.g. when the consumer found an error. */
  kill(): void;
  pid: number | undefined;
}

/**
 * The result of a started streaming tool: its ToolResult, or the ToolError
 * the classifier and failureOf make of it. `onExit` runs once it has exited.
 */
function settle(sub: ResultPromise, tool: string, args: string[], opts: RunOptions, onExit?: () => void): Promise<ToolResult> {
  const done = (async () => {
    let raw;
    try {
      raw = await sub; // reject: false: failures are results
    } finally {
      onExit?.();
    }
    const r = toResult(tool, args, raw);
    logResult(r);
    const err = failureOf(r, opts);
    if (err) throw err;
    return r;
  })();
  // Avoid an unhandled rejection if the caller fails first and never awaits done.
  done.catch(() => undefined);
  return done;
}

/**
 * Starts a tool whose stdout is consumed as a stream (thin_dump, thin_delta:
 * hundreds of MB for a fragmented pool). Memory stays constant: stdout is not
 * buffered here.
 */
export function spawnTool(tool: string, args: string[], opts: RunOptions = {}): StreamingTool {
  const sub: ResultPromise = execa(tool, args, {
    reject: false,
    stdin: 'ignore',
    buffer: { stdout: false, stderr: true },
    cancelSignal: opts.signal,
    env: toolEnv(opts.env),
    extendEnv: true,
    stripFinalNewline: false,
  });
  const done = settle(sub, tool, args, opts);
  // execa drops stdout that nobody reads by the time the tool exits: a fast tool
  // could finish before the consumer attaches (e.g. while it creates a spool
  // file). Our own PassThrough takes the bytes at once and keeps backpressure.
  const stdout = new PassThrough({ highWaterMark: 1024 * 1024 });
  sub.stdout!.pipe(stdout);
  sub.stdout!.on('error', (e) => stdout.destroy(e));
  return {
    stdout,
    done,
    kill: () => {
      sub.kill('SIGTERM');
    },
    pid: sub.pid,
  };
}

const preadAsync = promisify(fsRead);

/** How long a reader that caught up with the tool waits before reading again. */
const FOLLOW_POLL_MS = 10;

async function* followFd(fd: number, finished: () => boolean): AsyncGenerator<Buffer> {
  const buf = Buffer.allocUnsafe(1024 * 1024);
  let pos = 0;
  for (;;) {
    const wasFinished = finished();
    const { bytesRead } = await preadAsync(fd, buf, 0, buf.length, pos);
    if (bytesRead > 0) {
      pos += bytesRead;
      yield Buffer.from(buf.subarray(0, bytesRead));
      continue;
    }
    if (wasFinished) return; // the tool had exited before this read found nothing: all is read
    await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
  }
}

/**
 * Like spawnTool, but the tool writes its stdout into an unlinked temporary
 * file that is read as it grows. For thin_dump: it makes one write() per line
 * (std::endl), which into a pipe costs the tool itself 2x its time and Node
 * ~15 us per tiny chunk; into a file those writes are cheap (measured in
 * bench/plan-bench.ts: plan/tool 2.4x through a pipe, 1.1-1.4x through a file).
 * The file takes disk space like the XML (~75 bytes per mapping) until the
 * reader closes it; it has no name, so nothing is left behind on a crash.
 */
export function spawnToolToFile(tool: string, args: string[], opts: RunOptions & { spoolDir?: string } = {}): StreamingTool {
  const dir = mkdtempSync(join(opts.spoolDir ?? tmpdir(), 'thinship-out-'));
  const path = join(dir, 'stdout');
  const fd = openSync(path, 'w+', 0o600);
  rmSync(dir, { recursive: true, force: true });
  let exited = false;
  let sub: ResultPromise;
  try {
    sub = execa(tool, args, {
      reject: false,
      stdin: 'ignore',
      stdout: fd as unknown as 'pipe',
      buffer: { stderr: true },
      cancelSignal: opts.signal,
      env: toolEnv(opts.env),
      extendEnv: true,
      stripFinalNewline: false,
    });
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  const done = settle(sub, tool, args, opts, () => {
    exited = true;
  });
  const stdout = Readable.from(
    followFd(fd, () => exited),
    { objectMode: false },
  );
  let closed = false;
  const closeFd = () => {
    if (!closed) {
      closed = true;
      closeSync(fd);
    }
  };
  stdout.on('close', closeFd);
  stdout.on('error', closeFd);
  return {
    stdout,
    done,
    kill: () => {
      sub.kill('SIGTERM');
    },
    pid: sub.pid,
  };
}
