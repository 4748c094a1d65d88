// Original file: proto/thinship/v1/receiver.proto

/**
 * What the stream carries.
 */
export const TransferMode = {
  /**
   * Not set. MUST NOT be sent: the receiver refuses it with INVALID_ARGUMENT.
   */
  TRANSFER_MODE_UNSPECIFIED: 'TRANSFER_MODE_UNSPECIFIED',
  /**
   * The whole volume: every mapped range as Data; unmapped ranges MAY be sent
   * as Unmap so that the target reads back zeros there.
   */
  TRANSFER_MODE_FULL: 'TRANSFER_MODE_FULL',
  /**
   * The changes from the snapshot named by Begin.base_id to the one named by
   * Begin.source_id; applies only to a target that holds the base.
   */
  TRANSFER_MODE_INCREMENTAL: 'TRANSFER_MODE_INCREMENTAL',
} as const;

/**
 * What the stream carries.
 */
export type TransferMode =
  /**
   * Not set. MUST NOT be sent: the receiver refuses it with INVALID_ARGUMENT.
   */
  | 'TRANSFER_MODE_UNSPECIFIED'
  | 0
  /**
   * The whole volume: every mapped range as Data; unmapped ranges MAY be sent
   * as Unmap so that the target reads back zeros there.
   */
  | 'TRANSFER_MODE_FULL'
  | 1
  /**
   * The changes from the snapshot named by Begin.base_id to the one named by
   * Begin.source_id; applies only to a target that holds the base.
   */
  | 'TRANSFER_MODE_INCREMENTAL'
  | 2

/**
 * What the stream carries.
 */
export type TransferMode__Output = typeof TransferMode[keyof typeof TransferMode]
