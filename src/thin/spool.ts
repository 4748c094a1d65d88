/**
 * Compact temporary files for plans and mappings, so a plan of tens of millions
 * of operations costs disk, not memory.
 *
 * A spool holds fixed-size records of float64 fields (exact for every safe
 * integer, so block numbers and byte offsets fit), written sequentially through
 * a 1 MiB buffer and read back with positional reads (several readers may
 * iterate at once). The file is created in a private `fs.mkdtemp` directory and
 * unlinked (with its directory) as soon as it is open: only the descriptor
 * keeps it, so it disappears when the spool is closed and also when the process
 * dies, even by SIGKILL. Creating, opening and unlinking are synchronous (tens
 * of microseconds, once per spool) so that no exit can happen in between and
 * leave an empty directory behind. Records are in host byte order: a spool
 * never leaves the process that wrote it.
 */

const readAsync = promisify(read);
const writeAsync = promisify(write);
const closeAsync = promisify(close);
import { close, closeSync, mkdtempSync, openSync, read, rmdirSync, unlinkSync, write } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ThinshipError } from '../errors.js';

const DEFAULT_SPOOL_BUFFER_BYTES = 1024 * 1024;

export interface SpoolOptions {
  /** Parent directory of the private temp directory (default os.tmpdir()). */
  dir?: string;
  /** Write buffer size (default 1 MiB). */
  bufferBytes?: number;
}

/** Fixed-size records of `fields` float64 values in an unlinked temp file. */
export class RecordSpool {
  readonly fields: number;
  readonly recordBytes: number;
  /** Records appended so far (written or still buffered). */
  records = 0;
  private readonly bufferRecords: number;
  private cur: Float64Array;
  private curRecords = 0;
  /** Full buffers not yet written; bounded because writers drain() after each batch. */
  private full: Float64Array[] = [];
  private free: Float64Array[] = [];
  private writtenRecords = 0;
  private finished = false;
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly fd: number,
    fields: number,
    bufferBytes: number,
  ) {
    this.fields = fields;
    this.recordBytes = fields * 8;
    this.bufferRecords = Math.max(1, Math.floor(bufferBytes / this.recordBytes));
    this.cur = new Float64Array(this.bufferRecords * fields);
  }

  static async create(fields: number, opts: SpoolOptions = {}): Promise<RecordSpool> {
    if (!Number.isInteger(fields) || fields < 1) throw new ThinshipError('INTERNAL', `a spool record needs at least one field, got ${fields}`);
    const dir = mkdtempSync(join(opts.dir ?? tmpdir(), 'thinship-spool-'));
    const path = join(dir, 'records');
    let fd: number | undefined;
    try {
      fd = openSync(path, 'w+', 0o600);
      unlinkSync(path);
      rmdirSync(dir);
    } catch (e) {
      const quiet = (f: () => void) => {
        try {
          f();
        } catch {
          /* cleaning up after the first error */
        }
      };
      if (fd !== undefined) quiet(() => closeSync(fd!));
      quiet(() => unlinkSync(path));
      quiet(() => rmdirSync(dir));
      throw e;
    }
    return new RecordSpool(fd, fields, opts.bufferBytes ?? DEFAULT_SPOOL_BUFFER_BYTES);
  }

  private room(): Float64Array {
    if (this.finished) throw new ThinshipError('INTERNAL', 'append to a finished spool');
    if (this.curRecords === this.bufferRecords) {
      this.full.push(this.cur);
      this.cur = this.free.pop() ?? new Float64Array(this.bufferRecords * this.fields);
      this.curRecords = 0;
    }
    return this.cur;
  }

  /** Appends a record of 2 fields (the spool must have 2 fields). */
  append2(a: number, b: number): void {
    const c = this.room();
    const i = this.curRecords++ * 2;
    c[i] = a;
    c[i + 1] = b;
    this.records++;
  }

  /** Appends a record of 3 fields (the spool must have 3 fields). */
  append3(a: number, b: number, d: number): void {
    const c = this.room();
    const i = this.curRecords++ * 3;
    c[i] = a;
    c[i + 1] = b;
    c[i + 2] = d;
    this.records++;
  }

  /** True when full buffers wait to be written: the writer should `await drain()`. */
  get needsDrain(): boolean {
    return this.full.length > 0;
  }

  /** Writes the full buffers. */
  async drain(): Promise<void> {
    while (this.full.length > 0) {
      const f = this.full.shift()!;
      await this.writeOut(f, this.bufferRecords);
      this.free.push(f);
    }
  }

  private async writeOut(f: Float64Array, records: number): Promise<void> {
    const bytes = Buffer.from(f.buffer, f.byteOffset, records * this.recordBytes);
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await writeAsync(this.fd, bytes, done, bytes.length - done, this.writtenRecords * this.recordBytes + done);
      done += bytesWritten;
    }
    this.writtenRecords += records;
  }

  /** Writes everything; the spool is read-only afterwards. */
  async finish(): Promise<void> {
    if (this.finished) return;
    await this.drain();
    if (this.curRecords > 0) await this.writeOut(this.cur, this.curRecords);
    this.finished = true;
    this.cur = new Float64Array(0);
    this.free = [];
  }

  /** Reads up to `out.length / fields` records from `firstRecord`; returns how many were read. */
  async read(firstRecord: number, out: Float64Array): Promise<number> {
    if (!this.finished) throw new ThinshipError('INTERNAL', 'read from a spool before finish()');
    if (this.closing) throw new ThinshipError('INTERNAL', 'read from a closed spool');
    const want = Math.min(Math.floor(out.length / this.fields), this.records - firstRecord);
    if (want <= 0) return 0;
    const bytes = Buffer.from(out.buffer, out.byteOffset, want * this.recordBytes);
    let got = 0;
    while (got < bytes.length) {
      const { bytesRead } = await readAsync(this.fd, bytes, got, bytes.length - got, firstRecord * this.recordBytes + got);
      if (bytesRead === 0)
        throw new ThinshipError('IO_ERROR', `spool file ended at byte ${firstRecord * this.recordBytes + got}, expected ${this.records * this.recordBytes}`);
      got += bytesRead;
    }
    return want;
  }

  /**
   * All records in order, in chunks of up to `recordsPerChunk` records. The
   * yielded array is reused for the next chunk: copy what you keep.
   */
  async *chunks(recordsPerChunk = Math.floor(DEFAULT_SPOOL_BUFFER_BYTES / this.recordBytes)): AsyncGenerator<Float64Array> {
    const buf = new Float64Array(recordsPerChunk * this.fields);
    for (let r = 0; r < this.records;) {
      const n = await this.read(r, buf);
      yield buf.subarray(0, n * this.fields);
      r += n;
    }
  }

  /** Closes (and so frees) the file. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.cur = new Float64Array(0);
      this.full = [];
      this.free = [];
      await closeAsync(this.fd);
    })();
    return this.closing;
  }
}

export interface MappingLookup {
  /** Data block of the looked-up origin block. */
  dataBlock: number;
  /** Consecutive origin blocks from the looked-up one that map to consecutive data blocks (>= 1). */
  runBlocks: number;
}

/** Records per page read by a lookup (24 B each: 12 KiB). */
const PAGE_RECORDS = 512;

/**
 * A device's mappings (originBlock, dataBlock, lengthBlocks), sorted by origin,
 * for looking up where each origin block lives in the pool's data. Mappings
 * that continue each other in both origin and data are merged when added (the
 * `time` split thin_dump makes does not matter for reading).
 *
 * lookup() binary-searches a sparse in-memory index (the first origin of every
 * 512-record page: 16 bytes per 8 K mappings), reads that one page with pread,
 * and binary-searches it; the last page and the last hit are cached, so
 * sequential lookups read nothing.
 */
export class MappingSpool {
  private pendingOrigin = -1;
  private pendingData = 0;
  private pendingLength = 0;
  private readonly pageFirstOrigin: number[] = [];
  private finished = false;
  private page: Float64Array | undefined;
  private pageIndex = -1;
  private hitOrigin = -1;
  private hitData = 0;
  private hitLength = 0;

  private constructor(private readonly spool: RecordSpool) {}

  static async create(opts: SpoolOptions = {}): Promise<MappingSpool> {
    return new MappingSpool(await RecordSpool.create(3, opts));
  }

  /** Number of records (merged mappings). */
  get records(): number {
    return this.spool.records + (this.pendingOrigin >= 0 && !this.finished ? 1 : 0);
  }

  /**
   * Adds a mapping. Origins must increase without overlap (thin_dump prints them
   * so); otherwise BAD_METADATA.
   */
  add(originBlock: number, dataBlock: number, lengthBlocks: number): void {
    if (this.finished) throw new ThinshipError('INTERNAL', 'add to a finished mapping spool');
    if (lengthBlocks < 1) throw new ThinshipError('BAD_METADATA', `mapping at origin block ${originBlock} has length ${lengthBlocks}`);
    if (this.pendingOrigin >= 0) {
      const end = this.pendingOrigin + this.pendingLength;
      if (originBlock < end) {
        throw new ThinshipError('BAD_METADATA', `mappings out of order: origin block ${originBlock} comes after a mapping that ends at block ${end}`);
      }
      if (originBlock === end && dataBlock === this.pendingData + this.pendingLength) {
        this.pendingLength += lengthBlocks;
        return;
      }
      this.emit();
    }
    this.pendingOrigin = originBlock;
    this.pendingData = dataBlock;
    this.pendingLength = lengthBlocks;
  }

  private emit(): void {
    if (this.spool.records % PAGE_RECORDS === 0) this.pageFirstOrigin.push(this.pendingOrigin);
    this.spool.append3(this.pendingOrigin, this.pendingData, this.pendingLength);
  }

  get needsDrain(): boolean {
    return this.spool.needsDrain;
  }

  drain(): Promise<void> {
    return this.spool.drain();
  }

  /** Ends adding; lookups may start. */
  async finish(): Promise<void> {
    if (this.finished) return;
    if (this.pendingOrigin >= 0) this.emit();
    this.finished = true;
    await this.spool.finish();
  }

  async lookup(originBlock: number): Promise<MappingLookup | undefined> {
    if (!this.finished) throw new ThinshipError('INTERNAL', 'lookup before finish()');
    if (this.hitOrigin >= 0 && originBlock >= this.hitOrigin && originBlock < this.hitOrigin + this.hitLength) {
      return { dataBlock: this.hitData + (originBlock - this.hitOrigin), runBlocks: this.hitOrigin + this.hitLength - originBlock };
    }
    // Last page whose first origin <= originBlock.
    const idx = this.pageFirstOrigin;
    let lo = 0,
      hi = idx.length - 1,
      pg = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (idx[mid]! <= originBlock) {
        pg = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (pg < 0) return undefined;
    let page = this.page;
    if (this.pageIndex !== pg || page === undefined) {
      // A fresh buffer per load: a concurrent lookup may still be searching the previous one.
      const fresh = new Float64Array(PAGE_RECORDS * 3);
      const n = await this.spool.read(pg * PAGE_RECORDS, fresh);
      page = fresh.subarray(0, n * 3);
      this.page = page;
      this.pageIndex = pg;
    }
    // Last record in the page with origin <= originBlock (the page's first one qualifies).
    lo = 0;
    hi = page.length / 3 - 1;
    let r = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (page[mid * 3]! <= originBlock) {
        r = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    const o = page[r * 3]!,
      d = page[r * 3 + 1]!,
      l = page[r * 3 + 2]!;
    if (originBlock >= o + l) return undefined;
    this.hitOrigin = o;
    this.hitData = d;
    this.hitLength = l;
    return { dataBlock: d + (originBlock - o), runBlocks: o + l - originBlock };
  }

  /** Frees the file. Idempotent. */
  close(): Promise<void> {
    this.page = undefined;
    return this.spool.close();
  }
}
