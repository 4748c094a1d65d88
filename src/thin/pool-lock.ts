/**
 * A per-pool lock between thinship processes on one host: only one metadata
 * snapshot can be reserved per pool, so two sends on one pool take turns,
 * while sends on different pools run side by side.
 *
 * The lock is flock(2) on a file per pool (`<key>.flock` under the lock dir).
 * The kernel drops it when its owner closes the file or dies (crash, SIGKILL),
 * so there is no stale-lock guessing: a lock nobody holds is simply free.
 * The owner's pid is written into the file only for the "waiting for" message.
 *
 * The owner unlinks the file before it unlocks, so no lock file is left behind;
 * a waiter that then gets the lock on the unlinked file sees that the path no
 * longer names its file (inode check) and starts over on the new one.
 * The file name differs from the old lock *directory* (`<key>.lock`), which an
 * earlier version may have left on an upgraded machine.
 */
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync, constants } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ThinshipError } from '../errors.js';
import { nativeDevice } from '../device/native.js';
import { log as defaultLog, type Logger } from '../log.js';

/** The lock directory when the caller names none (the CLI takes THINSHIP_LOCK_DIR). */
const DEFAULT_LOCK_DIR = '/run/lock/thinship';

/** How often a waiter tries the lock again. */
const POLL_MS = 50;

export interface PoolLock {
  /** The lock file (for messages and tests). */
  path: string;
  release(): Promise<void>;
}

export function poolLockPath(key: string, dir = DEFAULT_LOCK_DIR): string {
  return join(dir, `${key.replace(/[^A-Za-z0-9+_.-]/g, '_')}.flock`);
}

/** The pid the current owner wrote, or undefined (none yet, or being written). */
function ownerOf(path: string): number | undefined {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Tries once: the open, locked fd, or undefined when another process holds the lock. */
function tryLock(path: string): number | undefined {
  for (;;) {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
    let keep = false;
    try {
      if (!nativeDevice().flock(fd, 'exclusive')) return undefined;
      // The previous owner may have unlinked this file just before unlocking it:
      // then the lock we hold guards nothing, and the path names a new file (or none).
      const mine = fstatSync(fd);
      let now;
      try {
        now = statSync(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      if (now === undefined || now.ino !== mine.ino || now.dev !== mine.dev) continue;
      keep = true;
      return fd;
    } finally {
      if (!keep) closeSync(fd);
    }
  }
}

export async function lockPool(key: string, opts: { dir?: string; timeoutMs?: number; signal?: AbortSignal; log?: Logger } = {}): Promise<PoolLock> {
  const log = opts.log ?? defaultLog;
  const dir = opts.dir ?? DEFAULT_LOCK_DIR;
  mkdirSync(dir, { recursive: true });
  const path = poolLockPath(key, dir);
  const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
  let waitLogged = false;
  for (;;) {
    opts.signal?.throwIfAborted();
    let fd: number | undefined;
    try {
      fd = tryLock(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ThinshipError(
        code === 'EACCES' || code === 'EPERM' ? 'PERMISSION_DENIED' : 'IO_ERROR',
        `cannot open the pool lock ${path}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    if (fd !== undefined) {
      const held = fd;
      ftruncateSync(held, 0);
      writeSync(held, `${process.pid}\n`, 0);
      let released = false;
      const release = async () => {
        if (released) return;
        released = true;
        // Unlink while still holding the lock, then unlock by closing (see the header).
        try {
          unlinkSync(path);
        } catch {
          /* already gone: nothing to clean */
        }
        closeSync(held);
      };
      return { path, release };
    }
    const owner = ownerOf(path);
    if (!waitLogged) {
      log.info({ lock: path, pid: owner }, 'another thinship process holds this pool; waiting for our turn');
      waitLogged = true;
    }
    if (Date.now() >= deadline) {
      throw new ThinshipError(
        'LOCK_TIMEOUT',
        `timed out waiting for the pool lock ${path} (held by ${owner === undefined ? 'another process' : `pid ${owner}`})`,
        { retryable: true },
      );
    }
    await sleep(Math.min(POLL_MS, Math.max(1, deadline - Date.now())), undefined, { signal: opts.signal }).catch(() => undefined);
  }
}
