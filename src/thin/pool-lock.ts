/**
 * A per-pool lock between thinship processes on one host: only one metadata
 * snapshot can be reserved per pool, so two sends on one pool take turns,
 * while sends on different pools run side by side.
 *
 * The lock is a directory (mkdir is atomic) holding the owner's pid and its
 * process start time. A lock whose owner is gone (crashed, SIGKILL) is stale
 * and taken over at once: no waiting for a timeout. Takeover renames the stale
 * directory away first, which only one contender can win.
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ThinshipError } from '../errors.js';
import { log } from '../log.js';

export const DEFAULT_LOCK_DIR = process.env.THINSHIP_LOCK_DIR ?? '/run/lock/thinship';

function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // field 22 (starttime), counted after the ")" that closes the command name
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export interface PoolLock { release(): Promise<void>; /** True if a dead owner's lock was taken over. */ tookOverStale: boolean }

export async function lockPool(key: string, opts: { dir?: string; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<PoolLock> {
  const dir = opts.dir ?? DEFAULT_LOCK_DIR;
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${key.replace(/[^A-Za-z0-9+_.-]/g, '_')}.lock`);
  const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
  const me = `${process.pid} ${startTimeOf(process.pid) ?? ''}\n`;
  let tookOverStale = false;
  let waitedLogged = false;
  for (;;) {
    opts.signal?.throwIfAborted();
    try {
      await mkdir(path);
      await writeFile(join(path, 'owner'), me);
      const release = async () => { await rm(path, { recursive: true, force: true }); };
      return { release, tookOverStale };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = await readFile(join(path, 'owner'), 'utf8').catch(() => undefined);
    // A lock directory without an owner file for seconds: its creator died between mkdir and write.
    const ownerless = owner === undefined && Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? Date.now()) > 5000;
    if (owner !== undefined || ownerless) {
      const [pidText, start] = (owner ?? '0').trim().split(' ');
      const pid = Number(pidText);
      const alive = Number.isInteger(pid) && pid > 0 && startTimeOf(pid) !== undefined && (start === undefined || start === '' || startTimeOf(pid) === start);
      if (!alive) {
        const aside = `${path}.stale-${process.pid}-${Date.now()}`;
        try {
          await rename(path, aside);
          await rm(aside, { recursive: true, force: true });
          log.warn({ lock: path, deadPid: pid }, 'took over a pool lock left by a process that is gone');
          tookOverStale = true;
        } catch { /* another contender won the takeover */ }
        continue;
      }
      if (!waitedLogged) { log.info({ lock: path, pid }, 'another thinship process holds this pool; waiting for our turn'); waitedLogged = true; }
    }
    if (Date.now() > deadline) throw new ThinshipError('LOCK_TIMEOUT', `timed out waiting for the pool lock ${path} (held by ${owner?.trim() ?? 'unknown'})`, { retryable: true });
    await sleep(100, undefined, { signal: opts.signal }).catch(() => undefined);
  }
}
