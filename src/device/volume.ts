/**
 * A volume the sender reads or the receiver writes: a block device (thin LV,
 * loop device, disk) or a regular (usually sparse image) file.
 *
 * Reads and writes go through Node's FileHandle, or the same fs calls on a
 * raw descriptor (libuv thread pool, page cache); discard, zero-out, hole
 * punching and fadvise go through the native addon, also off the main thread.
 * All offsets and lengths are in bytes and every failure is a ThinshipError
 * naming the path, offset and length.
 */
import { constants as fsConstants, close as fsClose, fdatasync, fstat, ftruncate, read as fsRead, write as fsWrite, type BigIntStats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { ThinshipError, type ErrorCode } from '../errors.js';
import { devMajorMinor, discardZeroesKnown, readBlockLimits } from './block-info.js';
import { isNativeErrnoError, nativeDevice, type FadviseAdvice, type NativeDevice } from './native.js';
import { planZeroRange } from './zero-plan.js';

export type VolumeKind = 'block' | 'file';
export type VolumeMode = 'read' | 'write';

export interface OpenVolumeOptions {
  mode: VolumeMode;
  /**
   * Block devices only: open with O_EXCL, so a mounted device or one held
   * exclusively by someone else (LVM, another thinship) is refused with
   * TARGET_BUSY, and nobody can mount it while we hold it. Defaults to true
   * for 'write' and false for 'read' (a sender must not lock out others
   * reading the same snapshot). Ignored for regular files (O_EXCL without
   * O_CREAT means nothing there).
   */
  exclusive?: boolean;
  /** 'write' on a path that does not exist: create an empty regular file (mode 0600) instead of NOT_FOUND. */
  create?: boolean;
  /**
   * Override the detection of whether discard reads back as zeros on this
   * block device (see block-info.ts). Pass true only if you know better,
   * e.g. the caller verified the target is a dm-thin LV by other means.
   */
  discardZeroes?: boolean;
}

/** Errno codes after which the same call may succeed later. */
const RETRYABLE_ERRNOS = new Set(['EAGAIN', 'EINTR', 'ETIMEDOUT', 'ENOMEM']);
const UNSUPPORTED_ERRNOS = new Set(['EOPNOTSUPP', 'ENOTSUP', 'ENOSYS', 'ENOTTY']);

function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function isUnsupported(e: unknown): boolean {
  return UNSUPPORTED_ERRNOS.has(errnoOf(e) ?? '');
}

/** The one place errno failures of device operations become ThinshipErrors. */
function deviceError(what: string, path: string, offsetBytes: number | undefined, lengthBytes: number | undefined, e: unknown): ThinshipError {
  if (e instanceof ThinshipError) return e;
  const errno = errnoOf(e);
  const syscall = isNativeErrnoError(e) ? e.syscall : (e as { syscall?: string } | undefined)?.syscall;
  const where = offsetBytes === undefined ? '' : ` at offset ${offsetBytes}${lengthBytes === undefined ? '' : ` length ${lengthBytes}`}`;
  let code: ErrorCode = 'IO_ERROR';
  let message = `${what} ${path}${where} failed: ${e instanceof Error ? e.message : String(e)}`;
  if (errno === 'EBUSY') {
    code = 'TARGET_BUSY';
    message = `${path} is in use (mounted or held open exclusively): ${what}${where} failed with EBUSY`;
  } else if (errno === 'EBADF' || errno === 'EISDIR') {
    code = 'USAGE';
  }
  if (errno === 'EOPNOTSUPP' || errno === 'ENOTSUP') message += ' (not supported by this device or file system)';
  return new ThinshipError(code, message, {
    retryable: RETRYABLE_ERRNOS.has(errno ?? ''),
    details: { path, op: what, offsetBytes, lengthBytes, errno, syscall },
    cause: e,
  });
}

function checkRange(what: string, path: string, offsetBytes: number, lengthBytes: number): void {
  if (
    !Number.isSafeInteger(offsetBytes) ||
    offsetBytes < 0 ||
    !Number.isSafeInteger(lengthBytes) ||
    lengthBytes < 0 ||
    !Number.isSafeInteger(offsetBytes + lengthBytes)
  ) {
    throw new ThinshipError('USAGE', `${what} ${path}: offset ${offsetBytes} and length ${lengthBytes} must be non-negative safe integers`, {
      details: { path, op: what, offsetBytes, lengthBytes },
    });
  }
}

/** Zeros for sub-sector edges and the write fallback; never written to. */
const ZERO_CHUNK_BYTES = 1024 * 1024;
let zeroChunk: Buffer | undefined;
function zeros(lengthBytes: number): Buffer {
  zeroChunk ??= Buffer.alloc(ZERO_CHUNK_BYTES);
  return zeroChunk.subarray(0, Math.min(lengthBytes, ZERO_CHUNK_BYTES));
}

/**
 * What a VolumeHandle needs of its open file: Node's FileHandle has it, and
 * FdFile gives it to a descriptor opened elsewhere (openat2 beneath a
 * directory), which Node cannot wrap in a FileHandle.
 */
export interface VolumeFile {
  readonly fd: number;
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buf: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  datasync(): Promise<void>;
  truncate(lengthBytes: number): Promise<void>;
  stat(opts: { bigint: true }): Promise<BigIntStats>;
  close(): Promise<void>;
}

/** A raw descriptor as a VolumeFile; the same libuv thread-pool calls FileHandle makes. */
class FdFile implements VolumeFile {
  constructor(readonly fd: number) {}
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return new Promise((resolve, reject) => fsRead(this.fd, buf, offset, length, position, (e, n) => (e ? reject(e) : resolve({ bytesRead: n }))));
  }
  write(buf: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    return new Promise((resolve, reject) => fsWrite(this.fd, buf, offset, length, position, (e, n) => (e ? reject(e) : resolve({ bytesWritten: n }))));
  }
  datasync(): Promise<void> {
    return new Promise((resolve, reject) => fdatasync(this.fd, (e) => (e ? reject(e) : resolve())));
  }
  truncate(lengthBytes: number): Promise<void> {
    return new Promise((resolve, reject) => ftruncate(this.fd, lengthBytes, (e) => (e ? reject(e) : resolve())));
  }
  stat(): Promise<BigIntStats> {
    return new Promise((resolve, reject) => fstat(this.fd, { bigint: true }, (e, st) => (e ? reject(e) : resolve(st))));
  }
  close(): Promise<void> {
    return new Promise((resolve, reject) => fsClose(this.fd, (e) => (e ? reject(e) : resolve())));
  }
}

export class VolumeHandle {
  readonly kind: VolumeKind;
  readonly path: string;
  readonly mode: VolumeMode;
  /**
   * Unit that discard / zeroOut offsets must be aligned to. Block devices:
   * the queue's logical block size (512 or 4096). Files: 1 — every byte
   * offset works for reads, writes and hole punching.
   */
  readonly logicalBlockBytes: number;
  /** Block: queue discard_granularity, 0 = no discard support. Files: st_blksize (hole-punch unit). */
  readonly discardGranularityBytes: number;
  /** Block: where granularity-aligned units begin (non-zero only for oddly aligned partitions). */
  readonly discardAlignmentBytes: number;
  /** Discard of granularity-aligned ranges is known to read back as zeros (always true for files). */
  readonly discardZeroes: boolean;

  #fh: VolumeFile;
  #fd: number;
  #native: NativeDevice;
  #sizeBytes: number;
  #closing: Promise<void> | undefined;
  #inflight = new Set<Promise<unknown>>();
  /** fallocate(PUNCH_HOLE) on this block device said EOPNOTSUPP once: don't ask again. */
  #bdevPunchUnsupported = false;

  /** @internal use openVolume() */
  constructor(init: {
    kind: VolumeKind;
    path: string;
    mode: VolumeMode;
    fh: VolumeFile;
    native: NativeDevice;
    sizeBytes: number;
    logicalBlockBytes: number;
    discardGranularityBytes: number;
    discardAlignmentBytes: number;
    discardZeroes: boolean;
  }) {
    this.kind = init.kind;
    this.path = init.path;
    this.mode = init.mode;
    this.#fh = init.fh;
    this.#fd = init.fh.fd;
    this.#native = init.native;
    this.#sizeBytes = init.sizeBytes;
    this.logicalBlockBytes = init.logicalBlockBytes;
    this.discardGranularityBytes = init.discardGranularityBytes;
    this.discardAlignmentBytes = init.discardAlignmentBytes;
    this.discardZeroes = init.discardZeroes;
  }

  /** Block: BLKGETSIZE64 at open. File: st_size, kept up to date by writeAt/extendTo/makeZero. */
  get sizeBytes(): number {
    return this.#sizeBytes;
  }

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Reads up to lengthBytes at offsetBytes into buf[0..lengthBytes). Returns
   * the count read: less than asked only at the end of the file or device
   * (the caller decides what a short read means).
   */
  async readAt(buf: Uint8Array, offsetBytes: number, lengthBytes: number = buf.byteLength): Promise<number> {
    checkRange('read', this.path, offsetBytes, lengthBytes);
    if (lengthBytes > buf.byteLength) {
      throw new ThinshipError('USAGE', `read ${this.path}: length ${lengthBytes} exceeds the buffer's ${buf.byteLength} bytes`, {
        details: { path: this.path, offsetBytes, lengthBytes },
      });
    }
    return this.#track(async () => {
      let done = 0;
      try {
        while (done < lengthBytes) {
          const { bytesRead } = await this.#fh.read(buf, done, lengthBytes - done, offsetBytes + done);
          if (bytesRead === 0) break; // end of file / device
          done += bytesRead;
        }
      } catch (e) {
        throw deviceError('read', this.path, offsetBytes + done, lengthBytes - done, e);
      }
      return done;
    });
  }

  /** Writes all of buf at offsetBytes (looping over short writes). Files grow; block devices refuse to go past the end. */
  async writeAt(buf: Uint8Array, offsetBytes: number): Promise<void> {
    const lengthBytes = buf.byteLength;
    this.#checkWritable('write', offsetBytes, lengthBytes);
    await this.#track(async () => {
      let done = 0;
      try {
        while (done < lengthBytes) {
          const { bytesWritten } = await this.#fh.write(buf, done, lengthBytes - done, offsetBytes + done);
          if (bytesWritten === 0) throw new Error('write returned 0 bytes');
          done += bytesWritten;
        }
      } catch (e) {
        throw deviceError('write', this.path, offsetBytes + done, lengthBytes - done, e);
      }
      if (this.kind === 'file') this.#sizeBytes = Math.max(this.#sizeBytes, offsetBytes + lengthBytes);
    });
  }

  /**
   * Discards a range. Block devices: BLKDISCARD (offset and length aligned to
   * the logical block size; the device may ignore parts smaller than its
   * granularity and need not zero — use makeZero when zeros are required).
   * Files: punches a hole (reads back as zeros).
   */
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#checkWritable('discard', offsetBytes, lengthBytes);
    this.#checkBlockAligned('discard', offsetBytes, lengthBytes);
    await this.#native_('discard', offsetBytes, lengthBytes, (fd) =>
      this.kind === 'block' ? this.#native.discard(fd, offsetBytes, lengthBytes) : this.#native.punchHole(fd, offsetBytes, lengthBytes),
    );
  }

  /**
   * Writes zeros over a range, keeping it allocated. Block devices:
   * BLKZEROOUT (aligned to the logical block size; the kernel writes zero
   * pages when the device has no write-zeroes offload). Files:
   * fallocate(ZERO_RANGE), or plain writes of zeros where the file system
   * lacks it (tmpfs), never beyond the end of the file.
   */
  async zeroOut(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#checkWritable('zeroOut', offsetBytes, lengthBytes);
    this.#checkBlockAligned('zeroOut', offsetBytes, lengthBytes);
    await this.#native_('zeroOut', offsetBytes, lengthBytes, async (fd) => {
      if (this.kind === 'block') await this.#native.zeroOut(fd, offsetBytes, lengthBytes);
      else await this.#native.zeroRangeFile(fd, offsetBytes, lengthBytes);
    });
  }

  /**
   * What a receiver does for an UNMAP: afterwards [offset, offset+length)
   * reads back as zeros on any device, freeing space where that is safe.
   * Any byte offset and length is accepted.
   *
   * Files: punch a hole (the file system zeroes partial blocks itself); a
   * file system without hole punching gets ZERO_RANGE or written zeros. A
   * range past the end of the file extends the file (sparsely) so the range
   * exists and reads as zeros.
   *
   * Block devices (see zero-plan.ts): sub-sector edges are written as
   * zeros; if discard is known to zero on this device (dm-thin, loop), the
   * granularity-aligned middle is discarded — dm-thin frees whole pool
   * blocks only and leaves partial ones untouched, so the rest is zeroed.
   * Otherwise the whole aligned part is zeroed with write-zeroes:
   * fallocate(PUNCH_HOLE) on the device first (a write-zeroes that may
   * unmap, so it still frees space where the device can), then BLKZEROOUT,
   * then plain writes. Correctness ("reads back as zeros") beats space saving.
   */
  async makeZero(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.#checkWritable('makeZero', offsetBytes, lengthBytes);
    if (lengthBytes === 0) return;
    await this.#track(async () => {
      if (this.kind === 'file') return this.#makeZeroFile(offsetBytes, lengthBytes);
      const pieces = planZeroRange(offsetBytes, lengthBytes, {
        logicalBlockBytes: this.logicalBlockBytes,
        discardGranularityBytes: this.discardGranularityBytes,
        discardAlignmentBytes: this.discardAlignmentBytes,
        discardZeroes: this.discardZeroes,
      });
      for (const p of pieces) {
        if (p.kind === 'write') await this.#writeZeros(p.offsetBytes, p.lengthBytes);
        else if (p.kind === 'zeroOut') await this.#zeroOutBlock(p.offsetBytes, p.lengthBytes);
        else {
          try {
            await this.#native.discard(this.#fd, p.offsetBytes, p.lengthBytes);
          } catch (e) {
            if (!isUnsupported(e)) throw deviceError('makeZero (discard)', this.path, p.offsetBytes, p.lengthBytes, e);
            await this.#zeroOutBlock(p.offsetBytes, p.lengthBytes);
          }
        }
      }
    });
  }

  /** The open file descriptor (extended attributes, FICLONE: target-state/). Owned by this handle. */
  get fd(): number {
    return this.#fd;
  }

  /** fdatasync: data written so far is on stable storage (device cache flushed). */
  async flush(): Promise<void> {
    this.#checkOpen('flush');
    await this.#track(async () => {
      try {
        await this.#fh.datasync();
      } catch (e) {
        throw deviceError('flush', this.path, undefined, undefined, e);
      }
    });
  }

  /** posix_fadvise over a range; length 0 means "to the end". */
  async advise(advice: FadviseAdvice, offsetBytes = 0, lengthBytes = 0): Promise<void> {
    checkRange(`fadvise ${advice}`, this.path, offsetBytes, lengthBytes);
    await this.#native_(`fadvise ${advice}`, offsetBytes, lengthBytes, (fd) => this.#native.fadvise(fd, offsetBytes, lengthBytes, advice));
  }

  /** Drop a range from the page cache once read (a sender streaming a whole volume should not evict everything else). */
  async adviseDontNeed(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.advise('dontneed', offsetBytes, lengthBytes);
  }

  /**
   * Files: grow to sizeBytes (ftruncate; the new part is a hole). Shrinking
   * is refused — losing data must never be a side effect. Block devices
   * cannot grow: a device smaller than sizeBytes is TARGET_TOO_SMALL.
   */
  async extendTo(sizeBytes: number): Promise<void> {
    checkRange('extendTo', this.path, sizeBytes, 0);
    this.#checkOpen('extendTo');
    if (this.kind === 'block') {
      if (sizeBytes > this.#sizeBytes) {
        throw new ThinshipError('TARGET_TOO_SMALL', `${this.path} is a block device of ${this.#sizeBytes} bytes and cannot be extended to ${sizeBytes} bytes`, {
          details: { path: this.path, sizeBytes: this.#sizeBytes, wantedBytes: sizeBytes },
        });
      }
      return;
    }
    if (this.mode !== 'write') throw new ThinshipError('USAGE', `extendTo ${this.path}: the volume was opened for reading`, { details: { path: this.path } });
    if (sizeBytes < this.#sizeBytes) {
      throw new ThinshipError('USAGE', `extendTo ${this.path}: ${sizeBytes} bytes is smaller than the file's ${this.#sizeBytes} bytes; refusing to truncate`, {
        details: { path: this.path, sizeBytes: this.#sizeBytes, wantedBytes: sizeBytes },
      });
    }
    if (sizeBytes === this.#sizeBytes) return;
    await this.#track(async () => {
      try {
        await this.#fh.truncate(sizeBytes);
      } catch (e) {
        throw deviceError('extendTo', this.path, sizeBytes, undefined, e);
      }
      this.#sizeBytes = Math.max(this.#sizeBytes, sizeBytes);
    });
  }

  /** fstat of the open descriptor (what is open, whatever its path now names). */
  async stat(): Promise<BigIntStats> {
    this.#checkOpen('stat');
    return this.#track(async () => {
      try {
        return await this.#fh.stat({ bigint: true });
      } catch (e) {
        throw deviceError('fstat', this.path, undefined, undefined, e);
      }
    });
  }

  /** Closes the file descriptor after in-flight operations settle. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      // A native call still running on the thread pool holds the raw fd; closing
      // under it could let the number be reused for another file.
      while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
      try {
        await this.#fh.close();
      } catch (e) {
        throw deviceError('close', this.path, undefined, undefined, e);
      }
    })();
    return this.#closing;
  }

  // ---- internals ------------------------------------------------------------

  #checkOpen(what: string): void {
    if (this.#closing !== undefined) throw new ThinshipError('USAGE', `${what} ${this.path}: the volume is closed`, { details: { path: this.path } });
  }

  #checkWritable(what: string, offsetBytes: number, lengthBytes: number): void {
    checkRange(what, this.path, offsetBytes, lengthBytes);
    this.#checkOpen(what);
    if (this.mode !== 'write') {
      throw new ThinshipError('USAGE', `${what} ${this.path} at offset ${offsetBytes} length ${lengthBytes}: the volume was opened for reading`, {
        details: { path: this.path, offsetBytes, lengthBytes },
      });
    }
    if (this.kind === 'block' && offsetBytes + lengthBytes > this.#sizeBytes) {
      throw new ThinshipError(
        'IO_ERROR',
        `${what} ${this.path} at offset ${offsetBytes} length ${lengthBytes} goes beyond the end of the device (${this.#sizeBytes} bytes)`,
        {
          details: { path: this.path, offsetBytes, lengthBytes, sizeBytes: this.#sizeBytes },
        },
      );
    }
  }

  #checkBlockAligned(what: string, offsetBytes: number, lengthBytes: number): void {
    const lbs = this.logicalBlockBytes;
    if (this.kind === 'block' && (offsetBytes % lbs !== 0 || lengthBytes % lbs !== 0)) {
      throw new ThinshipError(
        'USAGE',
        `${what} ${this.path} at offset ${offsetBytes} length ${lengthBytes}: offset and length must be multiples of the logical block size ${lbs} (use makeZero for unaligned ranges)`,
        {
          details: { path: this.path, offsetBytes, lengthBytes, logicalBlockBytes: lbs },
        },
      );
    }
  }

  #track<T>(fn: () => Promise<T>): Promise<T> {
    this.#checkOpen('operation on');
    const p = fn();
    this.#inflight.add(p);
    const untrack = (): void => {
      this.#inflight.delete(p);
    };
    p.then(untrack, untrack);
    return p;
  }

  #native_<T>(what: string, offsetBytes: number, lengthBytes: number, call: (fd: number) => Promise<T>): Promise<T> {
    return this.#track(async () => {
      try {
        return await call(this.#fd);
      } catch (e) {
        throw deviceError(what, this.path, offsetBytes, lengthBytes, e);
      }
    });
  }

  async #writeZeros(offsetBytes: number, lengthBytes: number): Promise<void> {
    let done = 0;
    try {
      while (done < lengthBytes) {
        const chunk = zeros(lengthBytes - done);
        const { bytesWritten } = await this.#fh.write(chunk, 0, chunk.byteLength, offsetBytes + done);
        if (bytesWritten === 0) throw new Error('write returned 0 bytes');
        done += bytesWritten;
      }
    } catch (e) {
      throw deviceError('makeZero (write zeros)', this.path, offsetBytes + done, lengthBytes - done, e);
    }
  }

  async #zeroOutBlock(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (!this.#bdevPunchUnsupported) {
      try {
        // On a block device this is write-zeroes that may unmap, with no slow fallback:
        // it fails with EOPNOTSUPP when the device cannot offload it.
        await this.#native.punchHole(this.#fd, offsetBytes, lengthBytes);
        return;
      } catch (e) {
        if (!isUnsupported(e)) throw deviceError('makeZero (fallocate punch hole)', this.path, offsetBytes, lengthBytes, e);
        this.#bdevPunchUnsupported = true;
      }
    }
    try {
      await this.#native.zeroOut(this.#fd, offsetBytes, lengthBytes);
    } catch (e) {
      if (!isUnsupported(e)) throw deviceError('makeZero (BLKZEROOUT)', this.path, offsetBytes, lengthBytes, e);
      await this.#writeZeros(offsetBytes, lengthBytes);
    }
  }

  async #makeZeroFile(offsetBytes: number, lengthBytes: number): Promise<void> {
    const end = offsetBytes + lengthBytes;
    if (end > this.#sizeBytes) {
      try {
        await this.#fh.truncate(end); // the new tail is a hole: it reads as zeros
      } catch (e) {
        throw deviceError('makeZero (extend)', this.path, offsetBytes, lengthBytes, e);
      }
      this.#sizeBytes = end;
    }
    try {
      await this.#native.punchHole(this.#fd, offsetBytes, lengthBytes);
      return;
    } catch (e) {
      if (!isUnsupported(e)) throw deviceError('makeZero (punch hole)', this.path, offsetBytes, lengthBytes, e);
    }
    try {
      await this.#native.zeroRangeFile(this.#fd, offsetBytes, lengthBytes);
    } catch (e) {
      throw deviceError('makeZero (zero range)', this.path, offsetBytes, lengthBytes, e);
    }
  }
}

function describeKind(st: { isDirectory(): boolean; isCharacterDevice(): boolean; isFIFO(): boolean; isSocket(): boolean }): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Opens a block device or regular file. Refuses anything else (directory,
 * character device, FIFO) with USAGE before opening it — opening a FIFO
 * would block. Errors name the path.
 */
export async function openVolume(path: string, opts: OpenVolumeOptions): Promise<VolumeHandle> {
  if (opts.mode !== 'read' && opts.mode !== 'write') {
    throw new ThinshipError('USAGE', `open ${path}: mode must be 'read' or 'write', got ${String(opts.mode)}`);
  }
  const native = nativeDevice();
  let pre;
  let creating = false;
  try {
    pre = await stat(path);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' && opts.mode === 'write' && opts.create === true) {
      creating = true;
    } else if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR') {
      throw new ThinshipError('NOT_FOUND', `${path} does not exist`, { details: { path }, cause: e });
    } else {
      throw deviceError('stat', path, undefined, undefined, e);
    }
  }
  if (pre && !pre.isBlockDevice() && !pre.isFile()) {
    throw new ThinshipError('USAGE', `${path} is ${describeKind(pre)}; a volume must be a block device or a regular file`, { details: { path } });
  }
  const isBlock = pre?.isBlockDevice() === true;
  const exclusive = isBlock && (opts.exclusive ?? opts.mode === 'write');
  let flags = opts.mode === 'write' ? fsConstants.O_RDWR : fsConstants.O_RDONLY;
  if (exclusive) flags |= fsConstants.O_EXCL;
  if (creating) flags |= fsConstants.O_CREAT;

  let fh: VolumeFile;
  try {
    fh = await open(path, flags, 0o600);
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === 'EBUSY') {
      throw new ThinshipError('TARGET_BUSY', `${path} is in use (mounted or held open exclusively)`, { details: { path, errno }, cause: e });
    }
    if (errno === 'ENOENT') throw new ThinshipError('NOT_FOUND', `${path} does not exist`, { details: { path }, cause: e });
    if (errno === 'ENXIO' || errno === 'ENODEV') {
      throw new ThinshipError('NOT_FOUND', `${path}: no such device behind this node (${errno}; e.g. a detached loop device or a removed LV)`, {
        details: { path, errno },
        cause: e,
      });
    }
    throw deviceError(`open (${opts.mode})`, path, undefined, undefined, e);
  }

  return volumeFromFile(fh, path, opts, native);
}

/**
 * A VolumeHandle for a descriptor the caller opened (e.g. with openBeneath)
 * and checked: no second lookup by path, so what was checked is what gets
 * written. Takes ownership of fd (closed on failure too). O_EXCL on a block
 * device must have been given at open; `exclusive` is not applied here.
 */
export async function openVolumeFd(fd: number, path: string, opts: OpenVolumeOptions): Promise<VolumeHandle> {
  const file = new FdFile(fd);
  if (opts.mode !== 'read' && opts.mode !== 'write') {
    await file.close().catch(() => undefined);
    throw new ThinshipError('USAGE', `open ${path}: mode must be 'read' or 'write', got ${String(opts.mode)}`);
  }
  let native: NativeDevice;
  try {
    native = nativeDevice();
  } catch (e) {
    await file.close().catch(() => undefined);
    throw e;
  }
  return volumeFromFile(file, path, opts, native);
}

/** Checks what is open and measures it; closes fh on failure. */
async function volumeFromFile(fh: VolumeFile, path: string, opts: OpenVolumeOptions, native: NativeDevice): Promise<VolumeHandle> {
  try {
    const st = await fh.stat({ bigint: true });
    // Recheck on the open descriptor: the path may have been replaced since stat().
    if (!st.isBlockDevice() && !st.isFile()) {
      throw new ThinshipError('USAGE', `${path} is ${describeKind(st)}; a volume must be a block device or a regular file`, { details: { path } });
    }
    if (st.isFile()) {
      const blksize = Number(st.blksize);
      return new VolumeHandle({
        kind: 'file',
        path,
        mode: opts.mode,
        fh,
        native,
        sizeBytes: Number(st.size),
        logicalBlockBytes: 1,
        discardGranularityBytes: blksize > 0 ? blksize : 4096,
        discardAlignmentBytes: 0,
        discardZeroes: true,
      });
    }
    let sizeBytes: number;
    try {
      sizeBytes = native.blockSizeBytes(fh.fd);
    } catch (e) {
      throw deviceError('BLKGETSIZE64', path, undefined, undefined, e);
    }
    const { major, minor } = devMajorMinor(st.rdev);
    const limits = await readBlockLimits(major, minor);
    let logicalBlockBytes = limits?.logicalBlockBytes;
    if (logicalBlockBytes === undefined) {
      try {
        logicalBlockBytes = native.logicalBlockBytes(fh.fd);
      } catch (e) {
        throw deviceError('BLKSSZGET', path, undefined, undefined, e);
      }
    }
    // Without sysfs we cannot know discard support: 0 makes makeZero use write-zeroes only.
    let granularity = limits?.discardGranularityBytes ?? 0;
    if (granularity % logicalBlockBytes !== 0) granularity = 0; // never plan a misaligned discard
    let discardZeroes = false;
    if (opts.discardZeroes !== undefined) discardZeroes = opts.discardZeroes && granularity > 0;
    else if (limits && opts.mode === 'write') discardZeroes = await discardZeroesKnown(limits, major, minor);
    return new VolumeHandle({
      kind: 'block',
      path,
      mode: opts.mode,
      fh,
      native,
      sizeBytes,
      logicalBlockBytes,
      discardGranularityBytes: granularity,
      discardAlignmentBytes: limits?.discardAlignmentBytes ?? 0,
      discardZeroes,
    });
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}
