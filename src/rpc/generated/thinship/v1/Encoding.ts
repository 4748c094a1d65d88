// Original file: proto/thinship/v1/receiver.proto

/**
 * How Data.payload holds the bytes.
 */
export const Encoding = {
  /**
   * Not set. MUST NOT be sent: the receiver refuses it with INVALID_ARGUMENT.
   */
  ENCODING_UNSPECIFIED: 'ENCODING_UNSPECIFIED',
  /**
   * payload is the bytes themselves; its size MUST equal length_bytes.
   */
  ENCODING_RAW: 'ENCODING_RAW',
  /**
   * payload is exactly one zstd frame (no trailing bytes) whose header states
   * the content size, and that size MUST equal length_bytes. Allowed only
   * when Begin.compression is COMPRESSION_ZSTD. Receivers decompress into a
   * buffer of length_bytes and refuse frames that say or produce otherwise.
   */
  ENCODING_ZSTD: 'ENCODING_ZSTD',
  /**
   * The range is all zero bytes; payload MUST be empty. The receiver writes
   * zeros (or discards, where that reads back as zeros). The checksum is
   * still the checksum (Begin.checksum's algorithm) of length_bytes zero
   * bytes.
   */
  ENCODING_ZERO: 'ENCODING_ZERO',
} as const;

/**
 * How Data.payload holds the bytes.
 */
export type Encoding =
  /**
   * Not set. MUST NOT be sent: the receiver refuses it with INVALID_ARGUMENT.
   */
  | 'ENCODING_UNSPECIFIED'
  | 0
  /**
   * payload is the bytes themselves; its size MUST equal length_bytes.
   */
  | 'ENCODING_RAW'
  | 1
  /**
   * payload is exactly one zstd frame (no trailing bytes) whose header states
   * the content size, and that size MUST equal length_bytes. Allowed only
   * when Begin.compression is COMPRESSION_ZSTD. Receivers decompress into a
   * buffer of length_bytes and refuse frames that say or produce otherwise.
   */
  | 'ENCODING_ZSTD'
  | 2
  /**
   * The range is all zero bytes; payload MUST be empty. The receiver writes
   * zeros (or discards, where that reads back as zeros). The checksum is
   * still the checksum (Begin.checksum's algorithm) of length_bytes zero
   * bytes.
   */
  | 'ENCODING_ZERO'
  | 3

/**
 * How Data.payload holds the bytes.
 */
export type Encoding__Output = typeof Encoding[keyof typeof Encoding]
