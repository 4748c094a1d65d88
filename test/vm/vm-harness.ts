/**
 * Host side of the real-kernel tier: boots a throw-away VM (test/vm/run-guest.sh:
 * Debian 12's stock kernel with dm-thin, real LVM2 and thin tools, under QEMU)
 * that runs one guest script, and reads back what it wrote.
 *
 * The repository is shared into the guest over 9p at the same path, so the guest
 * runs the compiled CLI from dist/ and writes its results into
 * <repo>/.vm-results/<run-id>/ (ignored by git through a generated .gitignore).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { repoRoot } from '../helpers/paths.js';

/** The shared directory: run-guest.sh mounts the resolved path (pwd -P), so every path given to the guest is built on it. */
const shareRoot = realpathSync(repoRoot);
export const runGuestScript = join(shareRoot, 'test/vm/run-guest.sh');
export const guestDir = join(shareRoot, 'test/vm/guest');
export const vmResultsRoot = join(shareRoot, '.vm-results');
export const cliInGuest = join(shareRoot, 'dist/bin/thinship.js');

/**
 * The native addons the guest's node loads (ours in build/, the npm ones in
 * node_modules): run-guest.sh copies their shared libraries into the guest with
 * node's (RV_NODE_ADDONS), since some need one node does not (BLAKE3's needs librt).
 */
function nativeAddons(): string {
  const found: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > 4 || !existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory() && e.name !== '.bin' && e.name !== 'obj.target') walk(p, depth + 1);
      else if (e.isFile() && e.name.endsWith('.node')) found.push(p);
    }
  };
  walk(join(shareRoot, 'build/Release'), 0);
  walk(join(shareRoot, 'node_modules'), 0);
  for (const p of found) if (/\s/.test(p)) throw new Error(`VM tier: a native addon path with white space cannot be passed to run-guest.sh: ${p}`);
  return found.sort().join(' ');
}

/**
 * A reason to skip a VM scenario, or undefined. Only explicit settings skip (a
 * missing qemu is a failure): THINSHIP_SKIP_VM=1 skips the tier, and
 * THINSHIP_VM_ONLY=name[,name] runs only the named scenarios (e.g. plan-signals);
 * node's --test-name-pattern would still run the other suites' boots in their hooks.
 */
export function vmSkipReason(scenario?: string): string | undefined {
  if (process.env.THINSHIP_SKIP_VM === '1') return 'THINSHIP_SKIP_VM=1';
  const only = process.env.THINSHIP_VM_ONLY?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (scenario !== undefined && only?.length && !only.includes(scenario)) return `THINSHIP_VM_ONLY=${only.join(',')}`;
  return undefined;
}

export interface GuestRunOptions {
  /** Sizes of the sparse virtio disks, /dev/vda, /dev/vdb, ... (default ['4G']). */
  disks?: string[];
  /** Extra environment for the guest script (names must be shell identifiers). */
  env?: Record<string, string>;
  /** Arguments of the guest script. */
  args?: string[];
  /** The VM is killed after this many seconds (default 600). */
  timeoutSec?: number;
  /** Names the results directory (default: the script's base name). */
  name?: string;
  /** Guest RAM (default 2048). */
  memMiB?: number;
}

export interface GuestRun {
  /** The guest script's exit status; 124 = timeout, 125 = the VM itself failed. */
  exitCode: number;
  /** Guest stdout+stderr (serial line). */
  stdout: string;
  /** run-guest.sh's own messages (timings, build steps, console tail on failure). */
  stderr: string;
  /** Where the guest wrote its results (also holds console.log and guest-output.txt). */
  resultsDir: string;
  /** Host wall time of the whole run, ms. */
  wallMs: number;
  /** Guest uptime when the script started (boot time), s; undefined if not reported. */
  bootSec: number | undefined;
  /** Guest uptime when the script ended, s. */
  scriptEndSec: number | undefined;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function killOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // run-guest.sh runs in its own process group with qemu: do not leave VMs behind,
  // neither on a normal exit nor when this process is stopped by a signal.
  process.on('exit', () => {
    for (const c of live) killGroup(c, 'SIGKILL');
  });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => {
      void stopAll().finally(() => process.kill(process.pid, sig)); // no listener left: the default action ends this process
    });
  }
}

/** SIGTERM to every VM's process group (run-guest.sh stops qemu and cleans up its work dir); SIGKILL to what is left after 5 s. */
async function stopAll(): Promise<void> {
  const running = [...live].filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of running) killGroup(c, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(
      running.map(
        (c) =>
          new Promise((r) => {
            if (c.exitCode !== null || c.signalCode !== null) r(undefined);
            else c.once('close', r);
          }),
      ),
    ),
    new Promise((r) => {
      timer = setTimeout(r, 5000);
    }),
  ]);
  clearTimeout(timer);
  for (const c of running) killGroup(c, 'SIGKILL');
}

function killGroup(c: ChildProcess, sig: NodeJS.Signals): void {
  if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) return;
  try {
    process.kill(-c.pid, sig);
  } catch {
    /* already gone */
  }
}

interface Spawned {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function runScript(args: string[], env: NodeJS.ProcessEnv, hardTimeoutMs: number): Promise<Spawned> {
  killOnExit();
  const child = spawn('bash', args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(child);
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  // run-guest.sh has its own timeout (RV_TIMEOUT); this one is for a hung host side.
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child, 'SIGKILL');
  }, hardTimeoutMs);
  return new Promise((resolvePromise, reject) => {
    child.on('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolvePromise({ code, signal, stdout, stderr, timedOut });
    });
  });
}

let prepared: Promise<void> | undefined;

/**
 * Makes sure a VM can boot: qemu present (run-guest.sh installs it with apt when
 * it can), guest packages downloaded, initramfs and kernel built into RV_HOME.
 * Done once per process, before any boot, so parallel boots never race on an
 * empty cache (run-guest.sh also serialises builds with flock).
 * Fails with a clear message: the VM tier is not skipped silently.
 */
export function prepareVm(): Promise<void> {
  prepared ??= (async () => {
    if (!existsSync(cliInGuest)) throw new Error(`VM tier: ${cliInGuest} does not exist; build first (npx tsc -p .)`);
    const t0 = Date.now();
    const r = await runScript([runGuestScript], { ...process.env, RV_NODE_ADDONS: nativeAddons(), RV_PREPARE_ONLY: '1', RV_VERBOSE: '1' }, 20 * 60_000);
    if (r.code !== 0) {
      throw new Error(
        `VM tier: preparing the VM failed (run-guest.sh exit ${r.code ?? r.signal}${r.timedOut ? ', timed out' : ''}).\n` +
          'It needs qemu-system-x86_64 (Debian: apt-get install --no-install-recommends qemu-system-x86), ' +
          'apt access to download the guest packages on first use, and a writable RV_HOME ' +
          `(default ~/.cache/thinship-vm). Set THINSHIP_SKIP_VM=1 to skip this tier on purpose.\n` +
          `--- run-guest.sh stderr ---\n${r.stderr.slice(-4000)}`,
      );
    }
    const took = (Date.now() - t0) / 1000;
    if (took > 2) process.stderr.write(`[vm] cache prepared in ${took.toFixed(1)} s\n`);
  })();
  return prepared;
}

function gitIgnoreResults(): void {
  mkdirSync(vmResultsRoot, { recursive: true });
  const gi = join(vmResultsRoot, '.gitignore');
  // '*' also ignores this .gitignore: the directory never shows in git status.
  if (!existsSync(gi)) writeFileSync(gi, '# results of test/vm runs (vm-harness.ts)\n*\n');
}

/** Keeps the newest results of each scenario for inspection; drops same-name runs older than an hour. */
function pruneOldRuns(name: string): void {
  const hourAgo = Date.now() - 3600_000;
  for (const d of readdirSync(vmResultsRoot)) {
    if (!d.startsWith(`${name}-`)) continue;
    const p = join(vmResultsRoot, d);
    try {
      if (statSync(p).mtimeMs < hourAgo) rmSync(p, { recursive: true, force: true });
    } catch {
      /* raced with another run */
    }
  }
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** <resultsDir>/rerun.sh boots the same scenario again by hand, with the same environment (RV_VERBOSE etc. may be added). */
function writeRerunScript(resultsDir: string, env: NodeJS.ProcessEnv, names: string[], argv: string[]): void {
  const lines = ['#!/bin/bash', '# Re-runs this VM scenario by hand (written by test/vm/vm-harness.ts). Results land in this directory again.', 'set -e'];
  for (const k of names) lines.push(`export ${k}=${shQuote(env[k] ?? '')}`);
  lines.push(`exec bash ${shQuote(runGuestScript)} ${argv.map(shQuote).join(' ')} "$@"`);
  writeFileSync(join(resultsDir, 'rerun.sh'), lines.join('\n') + '\n', { mode: 0o755 });
}

/** Boots a VM, runs `scriptPath` in it with the repository shared, and returns its status and output. */
export async function runGuest(scriptPath: string, opts: GuestRunOptions = {}): Promise<GuestRun> {
  await prepareVm();
  const script = resolve(scriptPath);
  const name = opts.name ?? script.replace(/^.*\//, '').replace(/\.sh$/, '');
  gitIgnoreResults();
  pruneOldRuns(name);
  const resultsDir = join(vmResultsRoot, `${name}-${new Date().toISOString().replace(/[:.]/g, '')}-${process.pid}`);
  mkdirSync(resultsDir, { recursive: true });

  const guestEnv: Record<string, string> = { RESULTS: resultsDir, THINSHIP_REPO: shareRoot, THINSHIP_CLI: cliInGuest, ...opts.env };
  for (const k of Object.keys(guestEnv)) if (!ENV_NAME.test(k)) throw new Error(`runGuest: env name "${k}" is not a shell identifier`);
  const timeoutSec = opts.timeoutSec ?? 600;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...guestEnv,
    RV_SHARE: shareRoot,
    RV_NODE_ADDONS: nativeAddons(),
    RV_ENV: Object.keys(guestEnv).join(' '),
    RV_DISKS: (opts.disks ?? ['4G']).join(' '),
    RV_TIMEOUT: String(timeoutSec),
    RV_MEM: String(opts.memMiB ?? 2048),
    RV_CONSOLE: join(resultsDir, 'console.log'),
    RV_VERBOSE: '1',
  };
  writeRerunScript(
    resultsDir,
    env,
    [...Object.keys(guestEnv), 'RV_SHARE', 'RV_NODE_ADDONS', 'RV_ENV', 'RV_DISKS', 'RV_TIMEOUT', 'RV_MEM', 'RV_CONSOLE'],
    [script, ...(opts.args ?? [])],
  );
  const t0 = Date.now();
  const r = await runScript([runGuestScript, script, ...(opts.args ?? [])], env, (timeoutSec + 60) * 1000);
  const wallMs = Date.now() - t0;
  writeFileSync(join(resultsDir, 'guest-output.txt'), r.stdout);
  writeFileSync(join(resultsDir, 'run-guest-stderr.txt'), r.stderr);
  const uptime = (what: string) => {
    const m = new RegExp(`RV_TIME ${what} uptime=([0-9.]+)`).exec(r.stderr);
    return m ? Number(m[1]) : undefined;
  };
  return {
    exitCode: r.timedOut ? 124 : (r.code ?? 125),
    stdout: r.stdout,
    stderr: r.stderr,
    resultsDir,
    wallMs,
    bootSec: uptime('script-start'),
    scriptEndSec: uptime('script-end'),
  };
}

/** A short, readable account of a run for assertion messages. */
export function describeRun(run: GuestRun, tailChars = 3000): string {
  return `guest exit ${run.exitCode}, results in ${run.resultsDir}\n--- guest output (tail) ---\n${run.stdout.slice(-tailChars)}\n--- run-guest.sh ---\n${run.stderr.slice(-1500)}`;
}

/** One command run in the guest by lib.sh's run_cli (or the signal cases). */
export interface CommandCapture {
  name: string;
  argv: string;
  /** Exit status of the command, as the guest shell saw it (128+n: killed by signal n). */
  rc: number;
  stdout: string;
  stderr: string;
  /** `dmsetup status <vg>-<pool>-tpool` right after the command exited. */
  tpoolStatus: string;
  /** Its 7th field: '-' when no metadata snapshot is held, else the held root block. */
  heldRootAfter: string;
}

function readIf(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

/** The 7th field of a `dmsetup status` line of a thin-pool: "-" or the held metadata root. */
export function heldRootOf(statusLine: string): string {
  const f = statusLine.trim().split(/\s+/);
  if (f[2] !== 'thin-pool' || f[6] === undefined) throw new Error(`not a thin-pool status line: "${statusLine.trim()}"`);
  return f[6];
}

/** Reads $RESULTS/<name>/{argv,rc,stdout,stderr,tpool-status} as written by lib.sh. */
export function readCapture(resultsDir: string, name: string): CommandCapture {
  const d = join(resultsDir, name);
  const rcText = readIf(join(d, 'rc'));
  if (rcText === undefined) throw new Error(`the guest did not record command "${name}" (no ${d}/rc): see ${resultsDir}/guest-output.txt`);
  const tpoolStatus = readIf(join(d, 'tpool-status')) ?? '';
  return {
    name,
    argv: (readIf(join(d, 'argv')) ?? '').trim(),
    rc: Number(rcText.trim()),
    stdout: readIf(join(d, 'stdout')) ?? '',
    stderr: readIf(join(d, 'stderr')) ?? '',
    tpoolStatus,
    heldRootAfter: heldRootOf(tpoolStatus),
  };
}

/** A text file the guest wrote into the results directory. */
export function readResult(resultsDir: string, file: string): string {
  const p = join(resultsDir, file);
  const s = readIf(p);
  if (s === undefined) throw new Error(`the guest did not write ${p}`);
  return s;
}

/** Rows of an lvs JSON report the guest saved (lib.sh save_lvs). */
export function readLvsRows(resultsDir: string, file: string): Record<string, string>[] {
  const doc = JSON.parse(readResult(resultsDir, file)) as { report: { lv: Record<string, string>[] }[] };
  return doc.report.flatMap((r) => r.lv);
}
