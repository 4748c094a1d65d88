/**
 * One receiver per state directory: an exclusive flock on <stateDir>/serve.lock,
 * held for the daemon's life. Two daemons on one state directory would each
 * take the same transfers' checkpoints for their own and let two senders
 * "verify" different content written to one target. The kernel drops the lock
 * when the process dies (no stale-lock guessing); the pid written into the
 * file is for the operator only.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { join } from 'node:path';
import { ThinshipError } from '../errors.js';
import { nativeDevice } from '../device/native.js';

export const STATE_LOCK_FILE = 'serve.lock';

export class StateDirLock {
  private constructor(
    private fh: FileHandle | undefined,
    readonly path: string,
  ) {}

  /** Takes the lock or throws TARGET_BUSY naming the holder's pid (as it wrote it). */
  static async acquire(stateDir: string): Promise<StateDirLock> {
    const path = join(stateDir, STATE_LOCK_FILE);
    const fh = await open(path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, 0o600);
    try {
      if (!nativeDevice().flock(fh.fd, 'exclusive')) {
        const text = (await fh.readFile({ encoding: 'utf8' })).slice(0, 64).trim();
        const pid = /^\d+$/.test(text) ? text : 'unknown';
        throw new ThinshipError(
          'TARGET_BUSY',
          `the state directory ${stateDir} is in use by another thinship serve (pid ${pid}, holding ${path}); one receiver per state directory`,
          { details: { holderPid: pid } },
        );
      }
      await fh.truncate(0);
      await fh.write(`${process.pid}\n`, 0);
      return new StateDirLock(fh, path);
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
  }

  /** Closing the file releases the lock. */
  async release(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}
