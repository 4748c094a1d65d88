// Original file: proto/thinship/v1/receiver.proto

/**
 * Compression the sender may use for Data payloads.
 */
export const Compression = {
  /**
   * Not set. MUST NOT be sent: the receiver refuses it with INVALID_ARGUMENT.
   */
  COMPRESSION_UNSPECIFIED: 'COMPRESSION_UNSPECIFIED',
  /**
   * Every Data has encoding RAW or ZERO.
   */
  COMPRESSION_NONE: 'COMPRESSION_NONE',
  /**
   * Data MAY have encoding ZSTD (one zstd frame per Data).
   */
  COMPRESSION_ZSTD: 'COMPRESSION_ZSTD',
} as const;

/**
 * Compression the sender may use for Data payloads.
 */
export type Compression =
  /**
   * Not set. MUST NOT be sent: the receiver refuses it with INVALID_ARGUMENT.
   */
  | 'COMPRESSION_UNSPECIFIED'
  | 0
  /**
   * Every Data has encoding RAW or ZERO.
   */
  | 'COMPRESSION_NONE'
  | 1
  /**
   * Data MAY have encoding ZSTD (one zstd frame per Data).
   */
  | 'COMPRESSION_ZSTD'
  | 2

/**
 * Compression the sender may use for Data payloads.
 */
export type Compression__Output = typeof Compression[keyof typeof Compression]
