/**
 * LINBIT streams built by hand for the codec and pipe-mode tests, byte by byte
 * as docs/stream-format.md lays them out (independent of the encoder under
 * test), and the small async helpers those tests share.
 */
import assert from 'node:assert/strict';
import { ThinshipError } from '../../src/errors.js';
import { decodeStream } from '../../src/stream/linbit/decode.js';
import { encodeStream, type EncodeOptions } from '../../src/stream/linbit/encode.js';
import type { LinbitMessage } from '../../src/stream/linbit/format.js';

/** The magics as hex: format 1.1 and 1.0. */
export const M11 = '24c4f02aae2e4fa9';
export const M10 = 'ca7f00d5de7ec7ed';

/** A u64 as 16 hex digits, big-endian. */
export function u64(v: bigint | number): string {
  return BigInt(v).toString(16).padStart(16, '0');
}

/** One 28-byte header: magic | offset | length | cmd, big-endian. */
export function header(magic: string, offset: bigint | number, length: bigint | number, cmd: number): Buffer {
  return Buffer.from(magic + u64(offset) + u64(length) + cmd.toString(16).padStart(8, '0'), 'hex');
}

/** A format 1.1 header. */
export function hdr(offset: bigint | number, length: bigint | number, cmd: number): Buffer {
  return header(M11, offset, length, cmd);
}

/** END_STREAM's payload: n_chunks, n_data, n_unmap. */
export function stats(nChunks: number, nData: number, nUnmap: number): Buffer {
  return Buffer.from(u64(nChunks) + u64(nData) + u64(nUnmap), 'hex');
}

/** A begin-info record (1.1) carrying `json`. */
export function beginInfo(json: string): Buffer {
  const body = Buffer.from(json);
  return Buffer.concat([hdr(0, body.length, 0x8054_5301), body]);
}

/** A stream digest record (1.1): sha256 algorithm, digest `d`. */
export function digestRec(d: Buffer): Buffer {
  return Buffer.concat([hdr(0, 33, 0x8054_5303), Buffer.from([1]), d]);
}

/** Splits buf into pieces of `size` bytes (the last may be shorter). */
export function pieces(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** The whole encoded stream of `msgs`. */
export async function encodeAll(msgs: LinbitMessage[], opts?: EncodeOptions): Promise<Buffer> {
  return Buffer.concat(await collect(encodeStream(msgs, opts)));
}

/**
 * Decodes `bytes` whole, byte by byte and in 7-byte pieces; each must fail with
 * `code` (default BAD_STREAM) at stream position `pos` (in details and in the
 * message) and a message matching `match`. Returns the messages yielded before
 * the error (from the whole-buffer run).
 */
export async function expectBad(
  bytes: Buffer,
  want: { code?: 'BAD_STREAM' | 'CHECKSUM_MISMATCH'; pos: number; match: RegExp; maxDataBytes?: number; pieceBytes?: number },
): Promise<LinbitMessage[]> {
  let before: LinbitMessage[] = [];
  for (const size of [Math.max(bytes.length, 1), 1, 7]) {
    const seen: LinbitMessage[] = [];
    const input = bytes.length === 0 ? [] : pieces(bytes, size);
    await assert.rejects(
      (async () => {
        for await (const m of decodeStream(input, { maxDataBytes: want.maxDataBytes, pieceBytes: want.pieceBytes })) seen.push(m);
      })(),
      (e: unknown) => {
        assert.ok(e instanceof ThinshipError, `a ThinshipError, got ${String(e)}`);
        assert.equal(e.code, want.code ?? 'BAD_STREAM', e.message);
        assert.equal(e.details.streamPosition, want.pos, e.message);
        assert.ok(e.message.includes(`at byte ${want.pos} `), e.message);
        assert.match(e.message, want.match);
        return true;
      },
      `chunk size ${size}`,
    );
    if (size === Math.max(bytes.length, 1)) before = seen;
  }
  return before;
}
