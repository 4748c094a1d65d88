// Original file: proto/thinship/v1/receiver.proto

/**
 * Where a transfer stands.
 */
export const TransferStatus = {
  /**
   * Not set. A receiver never sends it; a client treats it as a status it
   * does not know.
   */
  TRANSFER_STATUS_UNSPECIFIED: 'TRANSFER_STATUS_UNSPECIFIED',
  /**
   * Begun and not finished: resumable from durable_offset_bytes.
   */
  TRANSFER_STATUS_IN_PROGRESS: 'TRANSFER_STATUS_IN_PROGRESS',
  /**
   * End applied, target flushed, digest verified.
   */
  TRANSFER_STATUS_COMPLETE: 'TRANSFER_STATUS_COMPLETE',
} as const;

/**
 * Where a transfer stands.
 */
export type TransferStatus =
  /**
   * Not set. A receiver never sends it; a client treats it as a status it
   * does not know.
   */
  | 'TRANSFER_STATUS_UNSPECIFIED'
  | 0
  /**
   * Begun and not finished: resumable from durable_offset_bytes.
   */
  | 'TRANSFER_STATUS_IN_PROGRESS'
  | 1
  /**
   * End applied, target flushed, digest verified.
   */
  | 'TRANSFER_STATUS_COMPLETE'
  | 2

/**
 * Where a transfer stands.
 */
export type TransferStatus__Output = typeof TransferStatus[keyof typeof TransferStatus]
