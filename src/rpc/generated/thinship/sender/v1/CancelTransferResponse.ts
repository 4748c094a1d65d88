// Original file: proto/thinship/sender/v1/sender.proto

import type { TransferInfo as _thinship_sender_v1_TransferInfo, TransferInfo__Output as _thinship_sender_v1_TransferInfo__Output } from '../../../thinship/sender/v1/TransferInfo.js';

/**
 * Response of CancelTransfer.
 */
export interface CancelTransferResponse {
  /**
   * The transfer after the cancel.
   */
  'transfer'?: (_thinship_sender_v1_TransferInfo | null);
}

/**
 * Response of CancelTransfer.
 */
export interface CancelTransferResponse__Output {
  /**
   * The transfer after the cancel.
   */
  'transfer': (_thinship_sender_v1_TransferInfo__Output | null);
}
