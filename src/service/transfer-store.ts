/**
 * The sender daemon's memory of its transfers across restarts: one JSON file
 * per transfer under `<stateDir>/transfers/`, written atomically (temporary
 * file, fsync, rename, fsync of the directory) at every change of state. A
 * daemon that starts again finds the transfers that were running and queues
 * them again: their receiver-side transfers resume where they were durable.
 * A file that does not parse is moved to `quarantine/` with a warning; it
 * never stops the daemon from starting.
 */
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ThinshipError } from '../errors.js';
import { StateDirLock } from '../receiver/state-lock.js';
import type { StartRequest, TransferInfo } from './transfer-manager.js';

const STORE_FORMAT = 1;

export interface StoredTransfer {
  owner: string;
  request: StartRequest;
  info: TransferInfo;
}

const ID = /^tsd-[0-9a-f]{32}$/;

export class TransferStore {
  private constructor(
    private readonly dir: string,
    private readonly lock: StateDirLock,
    private readonly log: Logger,
  ) {}

  /** Takes the state directory (one daemon per directory) and creates what is missing. */
  static async open(stateDir: string, log: Logger): Promise<TransferStore> {
    await mkdir(join(stateDir, 'transfers', 'quarantine'), { recursive: true, mode: 0o700 });
    const lock = await StateDirLock.acquire(stateDir).catch((e: unknown) => {
      if (e instanceof ThinshipError && e.code === 'TARGET_BUSY')
        throw new ThinshipError(
          'TARGET_BUSY',
          `the sender state directory ${stateDir} is in use by another thinship sender-serve (pid ${String(e.details.holderPid)}); one daemon per state directory`,
          { details: e.details },
        );
      throw e;
    });
    return new TransferStore(join(stateDir, 'transfers'), lock, log);
  }

  async loadAll(): Promise<StoredTransfer[]> {
    const out: StoredTransfer[] = [];
    for (const name of await readdir(this.dir)) {
      if (!name.endsWith('.json')) continue;
      const file = join(this.dir, name);
      try {
        const v = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
        const info = v.info as TransferInfo | undefined;
        const request = v.request as StartRequest | undefined;
        if (
          v.format !== STORE_FORMAT ||
          typeof v.owner !== 'string' ||
          !info ||
          !request ||
          typeof info.transferId !== 'string' ||
          !ID.test(info.transferId) ||
          `${info.transferId}.json` !== name ||
          typeof request.requestId !== 'string' ||
          typeof request.source?.snapshot !== 'string' ||
          typeof request.destination?.target !== 'string' ||
          typeof request.destination.receiverAddress !== 'string'
        ) {
          throw new Error('not a sender transfer record of this format');
        }
        out.push({ owner: v.owner, request, info });
      } catch (e) {
        const to = join(this.dir, 'quarantine', `${name}.${Date.now()}`);
        await rename(file, to).catch(() => undefined);
        this.log.warn({ file, movedTo: to, reason: (e as Error).message }, 'unreadable sender transfer record quarantined');
      }
    }
    return out;
  }

  async save(t: StoredTransfer): Promise<void> {
    const f = join(this.dir, `${t.info.transferId}.json`);
    const tmp = `${f}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify({ format: STORE_FORMAT, owner: t.owner, request: t.request, info: t.info }) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, f);
    await this.syncDir();
  }

  async remove(transferId: string): Promise<void> {
    await unlink(join(this.dir, `${transferId}.json`)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  async close(): Promise<void> {
    await this.lock.release();
  }

  private async syncDir(): Promise<void> {
    const d = await open(this.dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
