/**
 * The pool's metadata snapshot, held in a scope that releases it on every exit
 * path: thrown errors, SIGINT/SIGTERM/SIGHUP (which abort the running thin
 * tool and let the scope unwind), a thin tool killed by a signal.
 * Two sends on one pool take turns through the per-pool lock; a reservation
 * left by a crashed run is found (dmsetup status shows a held root) and, since
 * we hold the lock, released with a warning.
 */
import { ThinshipError } from '../errors.js';
import { runTool, type RunOptions } from '../exec/run.js';
import { classifyDmsetup } from '../exec/known-errors.js';
import { log } from '../log.js';
import { lockPool } from './pool-lock.js';
import { poolTpoolDmName, poolTmetaPath } from './names.js';

export interface PoolStatus {
  transactionId: number;
  /** Metadata block of the held metadata snapshot, or undefined when none is held. */
  heldMetadataRoot: number | undefined;
}

/** Parses `dmsetup status <vg>-<pool>-tpool`: "0 2097152 thin-pool 3 114/1024 86/16384 - rw ...". */
export function parsePoolStatus(line: string, dmName: string): PoolStatus {
  const f = line.trim().split(/\s+/);
  if (f[2] !== 'thin-pool' || f.length < 7) throw new ThinshipError('TOOL_FAILED', `dmsetup status ${dmName}: not a thin-pool status line: "${line.trim()}"`);
  const held = f[6]!;
  if (held !== '-' && !/^\d+$/.test(held)) throw new ThinshipError('TOOL_FAILED', `dmsetup status ${dmName}: unexpected held-metadata-root field "${held}"`);
  return { transactionId: Number(f[3]), heldMetadataRoot: held === '-' ? undefined : Number(held) };
}

export async function poolStatus(vg: string, pool: string, opts: RunOptions = {}): Promise<PoolStatus> {
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
  /** Aborted when a signal arrives: pass it to every tool run in the scope. */
  signal: AbortSignal;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** Thrown when a signal cut the scope short; the CLI exits 128+signal. */
export class InterruptedError extends ThinshipError {
  readonly signalName: string;
  constructor(sig: string) {
    super('ABORTED', `interrupted by ${sig}; the metadata snapshot was released`, { details: { signal: sig, exitCode: 128 + (SIGNAL_NUMBERS[sig] ?? 0) } });
    this.signalName = sig;
  }
}

/**
 * Runs `fn` while the pool's metadata snapshot is reserved. The reservation is
 * released before this returns or throws. Keep `fn` short: only the thin tool
 * and spooling its output should happen inside (data is read after release).
 */
export async function withMetadataSnapshot<T>(vg: string, pool: string, fn: (scope: MetadataSnapScope) => Promise<T>, opts: { lockDir?: string; signal?: AbortSignal } = {}): Promise<T> {
  const ac = new AbortController();
  let caught: string | undefined;
  const onSignal = (sig: string) => () => {
    if (caught) return; // a second signal waits for the same cleanup
    caught = sig;
    log.warn({ signal: sig }, 'signal received: stopping the thin tool and releasing the metadata snapshot');
    ac.abort(new InterruptedError(sig));
  };
  const handlers = SIGNALS.map((s) => [s, onSignal(s)] as const);
  for (const [s, h] of handlers) process.on(s, h);
  const outer = opts.signal;
  const onOuterAbort = () => ac.abort(outer?.reason);
  outer?.addEventListener('abort', onOuterAbort, { once: true });
  const signal = ac.signal;
  try {
    const lock = await lockPool(`${vg}-${pool}`, { dir: opts.lockDir, signal });
    try {
      const status = await poolStatus(vg, pool, { signal });
      if (status.heldMetadataRoot !== undefined) {
        // We hold the pool lock, so no other thinship holds this reservation: a crashed run left it.
        process.stderr.write(`thinship: releasing a stale metadata snapshot reservation on ${vg}/${pool} (held root block ${status.heldMetadataRoot}) left by an earlier run that did not finish\n`);
        await message(vg, pool, 'release_metadata_snap');
      }
      await message(vg, pool, 'reserve_metadata_snap', { signal });
      try {
        if (caught) throw new InterruptedError(caught);
        const result = await fn({ tmetaPath: poolTmetaPath(vg, pool), signal });
        if (caught) throw new InterruptedError(caught);
        return result;
      } finally {
        // Never with the aborted signal: the release must run.
        await message(vg, pool, 'release_metadata_snap').catch((e: unknown) => {
          log.error({ err: e }, 'release_metadata_snap failed');
          process.stderr.write(`thinship: WARNING: could not release the metadata snapshot of ${vg}/${pool}: ${(e as Error).message}\n  release it by hand: dmsetup message ${poolTpoolDmName(vg, pool)} 0 release_metadata_snap\n`);
        });
      }
    } finally {
      await lock.release();
    }
  } catch (e) {
    if (caught && !(e instanceof InterruptedError)) throw new InterruptedError(caught);
    throw e;
  } finally {
    for (const [s, h] of handlers) process.removeListener(s, h);
    outer?.removeEventListener('abort', onOuterAbort);
  }
}
