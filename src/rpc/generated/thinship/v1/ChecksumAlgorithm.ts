// Original file: proto/thinship/v1/receiver.proto

/**
 * How Data is checksummed and the stream digested.
 */
export const ChecksumAlgorithm = {
  /**
   * Not set. MUST NOT be sent: the receiver refuses it with INVALID_ARGUMENT.
   */
  CHECKSUM_ALGORITHM_UNSPECIFIED: 'CHECKSUM_ALGORITHM_UNSPECIFIED',
  /**
   * No per-Data checksum and no stream digest (a receiver MAY refuse this).
   */
  CHECKSUM_ALGORITHM_NONE: 'CHECKSUM_ALGORITHM_NONE',
  /**
   * Every Data carries sha256 of its uncompressed bytes, and End carries the
   * stream digest (a sha256 hash chain over every Data and Unmap, described
   * at End.digest).
   */
  CHECKSUM_ALGORITHM_SHA256: 'CHECKSUM_ALGORITHM_SHA256',
  /**
   * Every Data carries BLAKE3 (the default 32-byte output, unkeyed) of its
   * uncompressed bytes, and End carries the same stream digest as with
   * SHA256: the sha256 chain, fed the BLAKE3 checksums. Receivers that
   * predate this value refuse it in the Begin (INVALID_ARGUMENT naming the
   * checksum field); a sender then sends SHA256 (see docs/stream-format.md).
   */
  CHECKSUM_ALGORITHM_BLAKE3: 'CHECKSUM_ALGORITHM_BLAKE3',
} as const;

/**
 * How Data is checksummed and the stream digested.
 */
export type ChecksumAlgorithm =
  /**
   * Not set. MUST NOT be sent: the receiver refuses it with INVALID_ARGUMENT.
   */
  | 'CHECKSUM_ALGORITHM_UNSPECIFIED'
  | 0
  /**
   * No per-Data checksum and no stream digest (a receiver MAY refuse this).
   */
  | 'CHECKSUM_ALGORITHM_NONE'
  | 1
  /**
   * Every Data carries sha256 of its uncompressed bytes, and End carries the
   * stream digest (a sha256 hash chain over every Data and Unmap, described
   * at End.digest).
   */
  | 'CHECKSUM_ALGORITHM_SHA256'
  | 2
  /**
   * Every Data carries BLAKE3 (the default 32-byte output, unkeyed) of its
   * uncompressed bytes, and End carries the same stream digest as with
   * SHA256: the sha256 chain, fed the BLAKE3 checksums. Receivers that
   * predate this value refuse it in the Begin (INVALID_ARGUMENT naming the
   * checksum field); a sender then sends SHA256 (see docs/stream-format.md).
   */
  | 'CHECKSUM_ALGORITHM_BLAKE3'
  | 3

/**
 * How Data is checksummed and the stream digested.
 */
export type ChecksumAlgorithm__Output = typeof ChecksumAlgorithm[keyof typeof ChecksumAlgorithm]
