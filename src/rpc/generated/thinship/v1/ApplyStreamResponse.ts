// Original file: proto/thinship/v1/receiver.proto

import type { TransferState as _thinship_v1_TransferState, TransferState__Output as _thinship_v1_TransferState__Output } from '../../thinship/v1/TransferState.js';
import type { Long } from '@grpc/proto-loader';

/**
 * The answer to ApplyStream, sent once everything is applied and durable.
 */
export interface ApplyStreamResponse {
  /**
   * The transfer's id (Begin.transfer_id).
   */
  'transferId'?: (string);
  /**
   * Data records this call applied (not counting earlier calls).
   */
  'dataRecordsApplied'?: (number | string | Long);
  /**
   * Unmap records this call applied (not counting earlier calls).
   */
  'unmapRecordsApplied'?: (number | string | Long);
  /**
   * Bytes this call wrote to the target.
   */
  'bytesWritten'?: (number | string | Long);
  /**
   * Bytes this call discarded or zeroed on the target.
   */
  'bytesDiscarded'?: (number | string | Long);
  /**
   * The verified stream digest of the whole transfer (empty with NONE).
   */
  'digest'?: (Buffer | Uint8Array | string);
  /**
   * The committed state: status COMPLETE, durable_offset_bytes at the end.
   */
  'state'?: (_thinship_v1_TransferState | null);
}

/**
 * The answer to ApplyStream, sent once everything is applied and durable.
 */
export interface ApplyStreamResponse__Output {
  /**
   * The transfer's id (Begin.transfer_id).
   */
  'transferId': (string);
  /**
   * Data records this call applied (not counting earlier calls).
   */
  'dataRecordsApplied': (number);
  /**
   * Unmap records this call applied (not counting earlier calls).
   */
  'unmapRecordsApplied': (number);
  /**
   * Bytes this call wrote to the target.
   */
  'bytesWritten': (number);
  /**
   * Bytes this call discarded or zeroed on the target.
   */
  'bytesDiscarded': (number);
  /**
   * The verified stream digest of the whole transfer (empty with NONE).
   */
  'digest': (Buffer);
  /**
   * The committed state: status COMPLETE, durable_offset_bytes at the end.
   */
  'state': (_thinship_v1_TransferState__Output | null);
}
