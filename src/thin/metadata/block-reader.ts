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
import { read } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ThinshipError, errnoOf } from '../../errors.js';
import { nativeDevice } from '../../device/native.js';

export const METADATA_BLOCK_BYTES = 4096;
/** Blocks cached by default: 8 MiB, enough for the paths a walk holds plus the children it reads ahead (two trees, up to 252 each). */
const DEFAULT_CACHE_BLOCKS = 2048;
/** Longest read of consecutive blocks: 256 KiB. */
const MAX_RUN_BLOCKS = 64;

/** fs.read as a promise of the byte count (lighter than FileHandle.read, which builds a result object per call). */
const readAsync = (fd: number, b: Buffer, off: number, len: number, pos: number): Promise<number> =>
  new Promise((resolve, reject) => read(fd, b, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));

export interface BlockReaderOptions {
  /** Drop the device's cached pages before the first read (live pools; see above). */
  dropCache?: boolean;
  cacheBlocks?: number;
}

export class BlockReader {
  /** Blocks read from the device (cache misses). */
  blocksRead = 0;
  private readonly cache = new Map<number, Promise<Buffer>>();

  private readonly fd: number;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    /** Blocks on the device: a block number at or beyond it is outside the metadata. */
    readonly nrBlocks: number,
    private readonly cacheBlocks: number,
  ) {
    this.fd = fh.fd;
  }

  static async open(path: string, opts: BlockReaderOptions = {}): Promise<BlockReader> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      // Opening the pool metadata the user named: a missing path is NOT_FOUND, anything else an I/O failure.
      const errno = errnoOf(e);
      throw new ThinshipError(errno === 'ENOENT' || errno === 'ENOTDIR' ? 'NOT_FOUND' : 'IO_ERROR', `cannot open pool metadata ${path}: ${(e as Error).message}`, { details: { path, errno }, cause: e });
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
    if (!this.inside(blockNr)) {
      return Promise.reject(new ThinshipError('BAD_METADATA', `${what}: block ${blockNr} is outside the metadata device ${this.path} (${this.nrBlocks} blocks of ${METADATA_BLOCK_BYTES} bytes)`, { details: { block: blockNr } }));
    }
    const hit = this.cache.get(blockNr);
    if (hit !== undefined) {
      this.cache.delete(blockNr);
      this.cache.set(blockNr, hit);
      return hit;
    }
    this.loadRun(blockNr, 1);
    return this.cache.get(blockNr)!;
  }

  private inside(blockNr: number): boolean {
    return Number.isSafeInteger(blockNr) && blockNr >= 0 && blockNr < this.nrBlocks;
  }

  /**
   * Starts reading blocks a walk will need soon, consecutive ones in one read
   * (thin_restore writes leaves in order; the kernel's allocator often does
   * too). Errors surface when a block is read().
   */
  prefetch(blocks: readonly number[]): void {
    const want = [...new Set(blocks)].filter((b) => this.inside(b) && !this.cache.has(b)).sort((a, b) => a - b);
    for (let i = 0; i < want.length;) {
      let j = i + 1;
      while (j < want.length && want[j] === want[j - 1]! + 1 && j - i < MAX_RUN_BLOCKS) j++;
      this.loadRun(want[i]!, j - i);
      i = j;
    }
  }

  /** Reads `count` blocks from `first` in one pread and caches each. */
  private loadRun(first: number, count: number): void {
    this.blocksRead += count;
    const all = this.readBytes(first, count);
    all.catch(() => undefined);
    for (let k = 0; k < count; k++) {
      // A copy, so a cached block never keeps its whole run's buffer alive: the cache bounds memory.
      const p = all.then((b) => count === 1 ? b : Buffer.from(b.subarray(k * METADATA_BLOCK_BYTES, (k + 1) * METADATA_BLOCK_BYTES)));
      p.catch(() => { if (this.cache.get(first + k) === p) this.cache.delete(first + k); });
      this.cache.set(first + k, p);
    }
    while (this.cache.size > this.cacheBlocks) this.cache.delete(this.cache.keys().next().value!);
  }

  private async readBytes(first: number, count: number): Promise<Buffer> {
    const want = count * METADATA_BLOCK_BYTES;
    const b = Buffer.allocUnsafeSlow(want);
    let got = 0;
    try {
      while (got < want) {
        const bytesRead = await readAsync(this.fd, b, got, want - got, first * METADATA_BLOCK_BYTES + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (e) {
      throw new ThinshipError('IO_ERROR', `reading metadata block ${first + Math.floor(got / METADATA_BLOCK_BYTES)} of ${this.path}: ${(e as Error).message}`, { cause: e, details: { block: first } });
    }
    if (got < want) {
      const block = first + Math.floor(got / METADATA_BLOCK_BYTES);
      throw new ThinshipError('BAD_METADATA', `metadata block ${block} of ${this.path} is cut short (the file ends at byte ${first * METADATA_BLOCK_BYTES + got})`, { details: { block } });
    }
    return b;
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.fh.close();
  }
}
