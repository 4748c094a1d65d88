/**
 * Positional reads of 4 KiB metadata blocks with a small LRU cache, counting
 * what it reads (the incremental planner's cost is the number of blocks read).
 *
 * Live pools: the kernel writes the metadata device with bios that bypass the
 * block device's page cache, so pages cached by an earlier reader can be stale.
 * thin_dump uses O_DIRECT; from JavaScript O_DIRECT is not usable: it needs
 * page-aligned user buffers and Node gives no control of a Buffer's address
 * (measured: 99 of 100 Buffer.allocUnsafeSlow buffers of 4 KiB..1 MiB gave
 * EINVAL with O_DIRECT on ext4). So a live reader drops the device's clean
 * cached pages once (posix_fadvise DONTNEED) after the metadata snapshot is
 * reserved and before its first read: every block of the held tree was written
 * before the reservation and does not change while it is held, so whatever
 * the cache holds after the drop was read after the reservation, fresh.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { ThinshipError, asThinshipError } from '../../errors.js';
import { nativeDevice } from '../../device/native.js';

export const METADATA_BLOCK_BYTES = 4096;
/** Blocks cached by default: 4 MiB, enough for every path a walk holds plus the recent leaves. */
export const DEFAULT_CACHE_BLOCKS = 1024;

export interface BlockReaderOptions {
  /** Drop the device's cached pages before the first read (live pools; see above). */
  dropCache?: boolean;
  cacheBlocks?: number;
}

export class BlockReader {
  /** Blocks read from the device (cache misses). */
  blocksRead = 0;
  private readonly cache = new Map<number, Promise<Buffer>>();

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    /** Blocks on the device: a block number at or beyond it is outside the metadata. */
    readonly nrBlocks: number,
    private readonly cacheBlocks: number,
  ) {}

  static async open(path: string, opts: BlockReaderOptions = {}): Promise<BlockReader> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      const err = asThinshipError(e);
      throw new ThinshipError(err.code, `cannot open pool metadata ${path}: ${err.message}`, { cause: e });
    }
    try {
      const st = await fh.stat();
      const sizeBytes = st.isBlockDevice() ? nativeDevice().blockSizeBytes(fh.fd) : st.size;
      if (opts.dropCache) await nativeDevice().fadvise(fh.fd, 0, 0, 'dontneed');
      return new BlockReader(path, fh, Math.floor(sizeBytes / METADATA_BLOCK_BYTES), opts.cacheBlocks ?? DEFAULT_CACHE_BLOCKS);
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
  }

  /** Block `blockNr` (a shared Buffer: do not modify). `what` names the block in errors. */
  read(blockNr: number, what: string): Promise<Buffer> {
    if (!Number.isSafeInteger(blockNr) || blockNr < 0 || blockNr >= this.nrBlocks) {
      return Promise.reject(new ThinshipError('BAD_METADATA', `${what}: block ${blockNr} is outside the metadata device ${this.path} (${this.nrBlocks} blocks of ${METADATA_BLOCK_BYTES} bytes)`, { details: { block: blockNr } }));
    }
    const hit = this.cache.get(blockNr);
    if (hit !== undefined) {
      this.cache.delete(blockNr);
      this.cache.set(blockNr, hit);
      return hit;
    }
    const p = this.load(blockNr);
    this.cache.set(blockNr, p);
    p.catch(() => this.cache.delete(blockNr));
    if (this.cache.size > this.cacheBlocks) this.cache.delete(this.cache.keys().next().value!);
    return p;
  }

  /** Starts reading a block that a walk will need soon; errors surface when it is read(). */
  prefetch(blockNr: number): void {
    if (!Number.isSafeInteger(blockNr) || blockNr < 0 || blockNr >= this.nrBlocks || this.cache.has(blockNr)) return;
    void this.read(blockNr, 'read-ahead');
  }

  private async load(blockNr: number): Promise<Buffer> {
    this.blocksRead++;
    const b = Buffer.allocUnsafe(METADATA_BLOCK_BYTES);
    let got = 0;
    try {
      while (got < METADATA_BLOCK_BYTES) {
        const { bytesRead } = await this.fh.read(b, got, METADATA_BLOCK_BYTES - got, blockNr * METADATA_BLOCK_BYTES + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (e) {
      throw new ThinshipError('IO_ERROR', `reading metadata block ${blockNr} of ${this.path}: ${(e as Error).message}`, { cause: e, details: { block: blockNr } });
    }
    if (got < METADATA_BLOCK_BYTES) throw new ThinshipError('BAD_METADATA', `metadata block ${blockNr} of ${this.path} is cut short (${got} of ${METADATA_BLOCK_BYTES} bytes)`, { details: { block: blockNr } });
    return b;
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.fh.close();
  }
}
