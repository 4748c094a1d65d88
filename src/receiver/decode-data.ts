/**
 * The CPU-heavy part of checking a DATA record, shared by the receiver's main
 * thread and its decode workers (decode-pool.ts): decompress a zstd payload
 * into a buffer of exactly the stated length (zstd.ts refuses frames that
 * say or produce otherwise), and compare the checksum (sha256 or BLAKE3, as
 * the transfer's begin says) of the bytes with the record's checksum (the
 * integrity core's checkDataChecksum). Nothing here
 * touches a device.
 */
import { ThinshipError } from '../errors.js';
import { checkDataChecksum, type RecordChecksum } from '../stream/integrity.js';
import type { ChunkDecompressor } from '../stream/zstd.js';

export interface DataCheck {
  offsetBytes: number;
  lengthBytes: number;
  payload: Uint8Array;
  encoding: 'raw' | 'zstd';
  /** The sender's checksum (32 bytes) and its algorithm, or undefined for a transfer without checksums. */
  checksum?: { algorithm: RecordChecksum; expected: Uint8Array };
  /**
   * The payload's whole ArrayBuffer belongs to this record and nothing reads it
   * afterwards: a decode worker may take it over (transfer, no copy).
   */
  detachable?: boolean;
  /** A recycled buffer to decompress into (decode-pool.ts), instead of a new one. */
  into?: ArrayBuffer;
}

export interface DataChecked {
  /** The bytes to write (the payload itself for raw). */
  data: Buffer;
  /** The checksum of data, by the record's algorithm (only when the record has a checksum). */
  sum?: Buffer;
}

export function checkData(c: DataCheck, dz: ChunkDecompressor): DataChecked {
  const payload = Buffer.from(c.payload.buffer, c.payload.byteOffset, c.payload.byteLength);
  const data = c.encoding === 'zstd' ? dz.decompress(payload, { offsetBytes: c.offsetBytes, lengthBytes: c.lengthBytes }, c.into) : payload;
  if (!c.checksum) return { data };
  const { algorithm, expected } = c.checksum;
  const { actual: sum, ok } = checkDataChecksum(data, expected, algorithm);
  if (!ok) {
    throw new ThinshipError(
      'CHECKSUM_MISMATCH',
      `data record at volume offset ${c.offsetBytes}: checksum mismatch over ${c.lengthBytes} bytes (${algorithm}: sender ${Buffer.from(expected).toString('hex').slice(0, 16)}…, data ${sum.toString('hex').slice(0, 16)}…); not written`,
      { details: { volumeOffset: c.offsetBytes } },
    );
  }
  return { data, sum };
}
