/**
 * Positional reads of 4 KiB metadata blocks with a small LRU cache, counting
 * what it reads (the incremental planner's cost is the number of blocks read).
 *
 * Reads are synchronous preads (fs.readSync); a full walk reads consecutive
 * blocks in one call (readRun).
 * Measured: with a promise per read, every block cost a round trip through
 * libuv's thread pool, and on a loaded machine the wait for the two threads to
 * be scheduled dominated (a 1000-block change: 1231 reads, ~0.4 s; synchronous,
 * a few ms). A walk lets the event loop turn every YIELD_EVERY_MS (LoopYielder),
 * so signals and timers still run.
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
import { readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ThinshipError, errnoOf } from '../../errors.js';
import { nativeDevice } from '../../device/native.js';

export const METADATA_BLOCK_BYTES = 4096;
/**
 * Blocks cached by default (8 MiB). The cache serves lookups (device details,
 * the top level of the mapping tree) and the right spines the delta reads for
 * where the devices end; the walks themselves read into their own buffers.
 */
const DEFAULT_CACHE_BLOCKS = 2048;
/** Longest read of consecutive blocks: 256 KiB. */
export const MAX_RUN_BLOCKS = 64;

/** Longest a walk reads and parses without letting the event loop turn (signals, timers, keepalives). */
const YIELD_EVERY_MS = 20;

/** Lets the event loop turn (a macrotask, not a microtask) once YIELD_EVERY_MS have passed since the last time. */
export class LoopYielder {
  private last = Date.now();

  /** A promise to await when it is time to yield, else undefined (so the hot path awaits nothing). */
  due(): Promise<void> | undefined {
    if (Date.now() - this.last < YIELD_EVERY_MS) return undefined;
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        this.last = Date.now();
        resolve();
      }),
    );
  }
}

export interface BlockReaderOptions {
  /** Drop the device's cached pages before the first read (live pools; see above). */
  dropCache?: boolean;
  cacheBlocks?: number;
}

export class BlockReader {
  /** Blocks read from the device (cache misses and uncached runs). */
  blocksRead = 0;
  private readonly cache = new Map<number, Buffer>();

  /** The open metadata file (the addon's delta walk reads through it). */
  readonly fd: number;

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
      throw new ThinshipError(
        errno === 'ENOENT' || errno === 'ENOTDIR' ? 'NOT_FOUND' : 'IO_ERROR',
        `cannot open pool metadata ${path}: ${(e as Error).message}`,
        { details: { path, errno }, cause: e },
      );
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

  /** Block `blockNr`, through the cache (a shared Buffer: do not modify). `what` names the block in errors. */
  read(blockNr: number, what: string): Buffer {
    this.check(blockNr, what);
    const hit = this.cache.get(blockNr);
    if (hit !== undefined) {
      this.cache.delete(blockNr);
      this.cache.set(blockNr, hit);
      return hit;
    }
    const b = this.readRun(blockNr, 1, Buffer.allocUnsafeSlow(METADATA_BLOCK_BYTES));
    this.cache.set(blockNr, b);
    while (this.cache.size > this.cacheBlocks) this.cache.delete(this.cache.keys().next().value!);
    return b;
  }

  /** BAD_METADATA naming `what` unless `blockNr` is a block of the device. */
  check(blockNr: number, what: string): void {
    if (!this.inside(blockNr)) {
      throw new ThinshipError(
        'BAD_METADATA',
        `${what}: block ${blockNr} is outside the metadata device ${this.path} (${this.nrBlocks} blocks of ${METADATA_BLOCK_BYTES} bytes)`,
        { details: { block: blockNr } },
      );
    }
  }

  inside(blockNr: number): boolean {
    return Number.isSafeInteger(blockNr) && blockNr >= 0 && blockNr < this.nrBlocks;
  }

  /**
   * Block `blockNr` in `into` (one block long, the caller's to reuse): copied
   * from the cache when it holds it, else read without caching (a walk that
   * reads each block once keeps its own buffers; see delta.ts).
   */
  readInto(blockNr: number, into: Buffer, what: string): Buffer {
    this.check(blockNr, what);
    const hit = this.cache.get(blockNr);
    if (hit !== undefined) {
      hit.copy(into);
      return into;
    }
    return this.readRun(blockNr, 1, into);
  }

  /**
   * Reads `count` blocks from `first` into `into` (at least count blocks long),
   * uncached: for a walk that reads each block once (a full send's leaves).
   * Returns the part of `into` read. Every block must be inside the device.
   */
  readRun(first: number, count: number, into: Buffer): Buffer {
    const want = count * METADATA_BLOCK_BYTES;
    let got = 0;
    try {
      while (got < want) {
        const bytesRead = readSync(this.fd, into, got, want - got, first * METADATA_BLOCK_BYTES + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    } catch (e) {
      throw new ThinshipError('IO_ERROR', `reading metadata block ${first + Math.floor(got / METADATA_BLOCK_BYTES)} of ${this.path}: ${(e as Error).message}`, {
        cause: e,
        details: { block: first },
      });
    }
    if (got < want) {
      const block = first + Math.floor(got / METADATA_BLOCK_BYTES);
      throw new ThinshipError(
        'BAD_METADATA',
        `metadata block ${block} of ${this.path} is cut short (the file ends at byte ${first * METADATA_BLOCK_BYTES + got})`,
        { details: { block } },
      );
    }
    this.blocksRead += count;
    return into.length === want ? into : into.subarray(0, want);
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.fh.close();
  }
}
