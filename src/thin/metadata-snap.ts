/**
 * The pool's metadata snapshot, held in a scope that releases it on every exit
 * path: thrown errors, an aborted `signal` (the CLI aborts it on
 * SIGINT/SIGTERM/SIGHUP: cli/signals.ts; that stops the running thin tool and
 * lets the scope unwind), a thin tool killed by a signal.
 * Two sends on one pool take turns through the per-pool lock; a reservation
 * left by a crashed run is found (dmsetup status shows a held root) and, since
 * we hold the lock, released with a warning.
 */
import { ThinshipError, abortError, isAbortOf } from '../errors.js';
import { runTool, type RunOptions } from '../exec/run.js';
import { classifyDmsetup } from '../exec/known-errors.js';
import { log as defaultLog, type Logger, type Warn } from '../log.js';
import { lockPool } from './pool-lock.js';
import { poolTpoolDmName, poolTmetaPath } from './names.js';

export interface PoolStatus {
  transactionId: number;
  /** Metadata block of the held metadata snapshot, or undefined when none is held. */
  heldMetadataRoot: number | undefined;
}

/** Parses `dmsetup status <vg>-<pool>-tpool`: "0 2097152 thin-pool 3 114/1024 86/16384 - rw ...". */
function parsePoolStatus(line: string, dmName: string): PoolStatus {
  const f = line.trim().split(/\s+/);
  if (f[2] !== 'thin-pool' || f.length < 7) throw new ThinshipError('TOOL_FAILED', `dmsetup status ${dmName}: not a thin-pool status line: "${line.trim()}"`);
  const held = f[6]!;
  if (held !== '-' && !/^\d+$/.test(held)) throw new ThinshipError('TOOL_FAILED', `dmsetup status ${dmName}: unexpected held-metadata-root field "${held}"`);
  return { transactionId: Number(f[3]), heldMetadataRoot: held === '-' ? undefined : Number(held) };
}

async function poolStatus(vg: string, pool: string, opts: RunOptions = {}): Promise<PoolStatus> {
  const dm = poolTpoolDmName(vg, pool);
  const r = await runTool('dmsetup', ['status', dm], { ...opts, classify: classifyDmsetup });
  return parsePoolStatus(r.stdout, dm);
}

async function message(vg: string, pool: string, msg: 'reserve_metadata_snap' | 'release_metadata_snap', opts: RunOptions = {}): Promise<void> {
  await runTool('dmsetup', ['message', poolTpoolDmName(vg, pool), '0', msg], { ...opts, classify: classifyDmsetup });
}

export interface MetadataSnapScope {
  /** Path to give thin_dump -m / thin_delta -m. */
  tmetaPath: string;
  /** The caller's signal: pass it to every tool run in the scope. */
  signal: AbortSignal | undefined;
}

export interface MetadataSnapOptions {
  lockDir?: string;
  /** Aborting it stops the scope's tools; the reservation is released, then this throws abortError(signal). */
  signal?: AbortSignal;
  log?: Logger;
  /** What the person running the command must see (a stale reservation released, a release that failed). Default: log.warn. */
  warn?: Warn;
}

/**
 * Runs `fn` while the pool's metadata snapshot is reserved. The reservation is
 * released before this returns or throws. Keep `fn` short: only the thin tool
 * and spooling its output should happen inside (data is read after release).
 */
export async function withMetadataSnapshot<T>(
  vg: string,
  pool: string,
  fn: (scope: MetadataSnapScope) => Promise<T>,
  opts: MetadataSnapOptions = {},
): Promise<T> {
  const log = opts.log ?? defaultLog;
  const warn: Warn = opts.warn ?? ((m) => log.warn(m));
  const signal = opts.signal;
  const released = 'the metadata snapshot was released';
  try {
    const lock = await lockPool(`${vg}-${pool}`, { dir: opts.lockDir, signal, log });
    try {
      const status = await poolStatus(vg, pool, { signal });
      if (status.heldMetadataRoot !== undefined) {
        // We hold the pool lock, so no other thinship holds this reservation: a crashed run left it.
        warn(
          `releasing a stale metadata snapshot reservation on ${vg}/${pool} (held root block ${status.heldMetadataRoot}) left by an earlier run that did not finish`,
        );
        await message(vg, pool, 'release_metadata_snap');
      }
      await message(vg, pool, 'reserve_metadata_snap', { signal });
      try {
        if (signal?.aborted) throw abortError(signal, released);
        const result = await fn({ tmetaPath: poolTmetaPath(vg, pool), signal });
        if (signal?.aborted) throw abortError(signal, released);
        return result;
      } finally {
        // Never with the aborted signal: the release must run.
        await message(vg, pool, 'release_metadata_snap').catch((e: unknown) => {
          log.error({ err: e }, 'release_metadata_snap failed');
          warn(
            `WARNING: could not release the metadata snapshot of ${vg}/${pool}: ${(e as Error).message}\n  release it by hand: dmsetup message ${poolTpoolDmName(vg, pool)} 0 release_metadata_snap`,
          );
        });
      }
    } finally {
      await lock.release();
    }
  } catch (e) {
    // A tool cancelled by the signal fails in its own words: say why it stopped instead.
    if (signal?.aborted && !isAbortOf(e, signal)) throw abortError(signal, released, e);
    throw e;
  }
}
