/**
 * zstd for DATA chunks: one frame per chunk, so chunks stay independent (a
 * receiver sizes its buffer from the stated length and may apply in any
 * order). Uses zstd-napi's low-level binding with reused contexts and a
 * reused destination buffer (20–25% faster than the high-level calls on mixed
 * data, 7–10x on incompressible data). zstd-napi runs every call on the
 * calling thread: parallel compression needs worker threads
 * (sender/compress-pool.ts).
 *
 * Decompression is the receiver's defence against hostile frames: the output
 * buffer is sized from the length the record states (never from the frame),
 * the frame must state exactly that content size, be a single frame with no
 * trailing bytes, and must produce exactly that many bytes.
 */
import { createRequire } from 'node:module';
import { ThinshipError } from '../errors.js';
import type * as Binding from 'zstd-napi/binding.js';

// zstd-napi is CommonJS without an exports map; its binding is a plain .node module.
const binding = createRequire(import.meta.url)('zstd-napi/binding') as typeof Binding;

/** Level 1: ~430–530 MB/s a core on ~2:1 data here; level 3 is ~300 MB/s. */
export const DEFAULT_ZSTD_LEVEL = 1;

/** The levels a sender may choose (`--zstd-level`): zstd's regular ones; 20–22 need a window larger than a chunk gains from. */
const ZSTD_LEVELS = { min: 1, max: 19 } as const;

/** `level` if it is a whole number in ZSTD_LEVELS, else a USAGE error naming the flag. */
export function checkZstdLevel(level: number, flag = '--zstd-level'): number {
  if (!Number.isInteger(level) || level < ZSTD_LEVELS.min || level > ZSTD_LEVELS.max) {
    throw new ThinshipError('USAGE', `${flag} must be a whole number from ${ZSTD_LEVELS.min} to ${ZSTD_LEVELS.max}, not ${String(level)}`);
  }
  return level;
}

/** The most bytes a zstd frame of `srcBytes` can take (ZSTD_compressBound). */
export function compressBound(srcBytes: number): number {
  return binding.compressBound(srcBytes);
}

/**
 * A chunk is sent compressed only if the frame saves at least 1/32 (~3%) of
 * its size; otherwise raw, which spares the receiver a decompression for
 * almost nothing.
 */
export function worthCompressing(compressedBytes: number, rawBytes: number): boolean {
  return compressedBytes <= rawBytes - Math.ceil(rawBytes / 32);
}

/** True if every byte of buf is zero (8 bytes at a time where aligned). */
export function isAllZero(buf: Uint8Array): boolean {
  const n = buf.byteLength;
  let i = 0;
  if (buf.byteOffset % 8 === 0 && n >= 8) {
    const words = new BigUint64Array(buf.buffer, buf.byteOffset, Math.floor(n / 8));
    for (let k = 0; k < words.length; k++) if (words[k] !== 0n) return false;
    i = words.length * 8;
  }
  for (; i < n; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Compresses chunks one at a time, reusing its context and destination buffer. */
export class ChunkCompressor {
  private readonly cctx = new binding.CCtx();
  private dst: Buffer = Buffer.alloc(0);

  constructor(private readonly level = DEFAULT_ZSTD_LEVEL) {}

  /**
   * Returns a fresh Buffer (owning its whole ArrayBuffer) holding one zstd frame of `src` if that is worth
   * sending (see worthCompressing), else undefined. The frame states its
   * content size (zstd's default for single-shot compression).
   */
  compress(src: Uint8Array, level = this.level): Buffer | undefined {
    const bound = binding.compressBound(src.byteLength);
    if (this.dst.length < bound) this.dst = Buffer.allocUnsafe(bound);
    const n = this.cctx.compress(this.dst, src, level);
    if (!worthCompressing(n, src.byteLength)) return undefined;
    // Copied out (the scratch buffer is reused for the next chunk) into memory of
    // its own, so it can be transferred between threads without taking Node's pool.
    const out = Buffer.allocUnsafeSlow(n);
    this.dst.copy(out, 0, 0, n);
    return out;
  }

  /**
   * Compresses `src` straight into `out` (no scratch copy) when `out` holds
   * compressBound(src) bytes: the frame's length if it is worth sending,
   * else 0 (`out` then holds nothing useful). undefined: `out` is too small
   * (use compress()).
   */
  compressInto(src: Uint8Array, out: Uint8Array, level = this.level): number | undefined {
    if (out.byteLength < binding.compressBound(src.byteLength)) return undefined;
    const n = this.cctx.compress(out, src, level);
    return worthCompressing(n, src.byteLength) ? n : 0;
  }
}

export interface FrameCheck {
  offsetBytes: number;
  lengthBytes: number;
}

/** Decompresses single-frame chunks for a receiver, checking every size claim first. */
export class ChunkDecompressor {
  private readonly dctx = new binding.DCtx();

  /**
   * Decompresses `frame` into a new buffer of exactly `lengthBytes`, or into
   * the first lengthBytes of `into` when given (a recycled buffer: the
   * receiver's decode pool). Throws BAD_STREAM naming the volume offset if
   * the frame is not one valid zstd frame whose content size is stated and
   * equals lengthBytes.
   */
  decompress(frame: Uint8Array, c: FrameCheck, into?: ArrayBuffer): Buffer {
    const where = `data record at volume offset ${c.offsetBytes} (length ${c.lengthBytes})`;
    const bad = (why: string, cause?: unknown) =>
      new ThinshipError('BAD_STREAM', `${where}: bad zstd frame: ${why}`, { details: { volumeOffset: c.offsetBytes, lengthBytes: c.lengthBytes }, cause });
    if (frame.byteLength > binding.compressBound(c.lengthBytes)) {
      throw bad(`${frame.byteLength} bytes is more than zstd can need for ${c.lengthBytes} bytes of content (${binding.compressBound(c.lengthBytes)})`);
    }
    let contentBytes: number | null;
    let frameBytes: number;
    try {
      contentBytes = binding.getFrameContentSize(frame);
      frameBytes = binding.findFrameCompressedSize(frame);
    } catch (e) {
      throw bad((e as Error).message, e);
    }
    if (contentBytes === null) throw bad('the frame does not state its content size');
    if (contentBytes !== c.lengthBytes) throw bad(`the frame says ${contentBytes} bytes of content, the record says ${c.lengthBytes}`);
    if (frameBytes !== frame.byteLength) throw bad(`the payload holds ${frame.byteLength - frameBytes} bytes after the first frame`);
    // Its own memory (transferable from a worker); `into` only when it holds the whole length.
    const out = into && into.byteLength >= c.lengthBytes ? Buffer.from(into, 0, c.lengthBytes) : Buffer.allocUnsafeSlow(c.lengthBytes);
    let n: number;
    try {
      n = this.dctx.decompress(out, frame);
    } catch (e) {
      throw bad((e as Error).message, e);
    }
    if (n !== c.lengthBytes) throw bad(`it produced ${n} bytes, the record says ${c.lengthBytes}`);
    return out;
  }
}
