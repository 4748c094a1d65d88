// Original file: proto/thinship/v1/receiver.proto

import type { Encoding as _thinship_v1_Encoding, Encoding__Output as _thinship_v1_Encoding__Output } from '../../thinship/v1/Encoding.js';
import type { Long } from '@grpc/proto-loader';

/**
 * Bytes to write at offset_bytes.
 */
export interface Data {
  /**
   * MUST be at or above the end of the previous record of this transfer
   * (ascending, non-overlapping order) and offset_bytes + length_bytes MUST
   * be <= Begin.volume_size_bytes; otherwise INVALID_ARGUMENT naming the
   * offset.
   */
  'offsetBytes'?: (number | string | Long);
  /**
   * The uncompressed length. MUST be > 0 and at most the receiver's chunk
   * limit (4 MiB unless configured otherwise; larger is INVALID_ARGUMENT).
   * Senders SHOULD use 256 KiB to 1 MiB.
   */
  'lengthBytes'?: (number | string | Long);
  /**
   * The bytes, as `encoding` says.
   */
  'payload'?: (Buffer | Uint8Array | string);
  /**
   * MUST be RAW, ZERO, or (with COMPRESSION_ZSTD) ZSTD. A frame that is not
   * valid zstd, or whose size is not length_bytes, is INVALID_ARGUMENT
   * naming the offset.
   */
  'encoding'?: (_thinship_v1_Encoding);
  /**
   * With CHECKSUM_ALGORITHM_SHA256: MUST be the 32-byte sha256 of the
   * uncompressed bytes; with CHECKSUM_ALGORITHM_BLAKE3, their 32-byte BLAKE3.
   * A mismatch is DATA_LOSS naming the offset, and the record is not
   * written. With NONE: MUST be empty.
   */
  'checksum'?: (Buffer | Uint8Array | string);
}

/**
 * Bytes to write at offset_bytes.
 */
export interface Data__Output {
  /**
   * MUST be at or above the end of the previous record of this transfer
   * (ascending, non-overlapping order) and offset_bytes + length_bytes MUST
   * be <= Begin.volume_size_bytes; otherwise INVALID_ARGUMENT naming the
   * offset.
   */
  'offsetBytes': (number);
  /**
   * The uncompressed length. MUST be > 0 and at most the receiver's chunk
   * limit (4 MiB unless configured otherwise; larger is INVALID_ARGUMENT).
   * Senders SHOULD use 256 KiB to 1 MiB.
   */
  'lengthBytes': (number);
  /**
   * The bytes, as `encoding` says.
   */
  'payload': (Buffer);
  /**
   * MUST be RAW, ZERO, or (with COMPRESSION_ZSTD) ZSTD. A frame that is not
   * valid zstd, or whose size is not length_bytes, is INVALID_ARGUMENT
   * naming the offset.
   */
  'encoding': (_thinship_v1_Encoding__Output);
  /**
   * With CHECKSUM_ALGORITHM_SHA256: MUST be the 32-byte sha256 of the
   * uncompressed bytes; with CHECKSUM_ALGORITHM_BLAKE3, their 32-byte BLAKE3.
   * A mismatch is DATA_LOSS naming the offset, and the record is not
   * written. With NONE: MUST be empty.
   */
  'checksum': (Buffer);
}
