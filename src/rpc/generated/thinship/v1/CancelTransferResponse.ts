// Original file: proto/thinship/v1/sender.proto

import type { TransferInfo as _thinship_v1_TransferInfo, TransferInfo__Output as _thinship_v1_TransferInfo__Output } from '../../thinship/v1/TransferInfo.js';

/**
 * Response of CancelTransfer.
 */
export interface CancelTransferResponse {
  /**
   * The transfer after the cancel.
   */
  'transfer'?: (_thinship_v1_TransferInfo | null);
}

/**
 * Response of CancelTransfer.
 */
export interface CancelTransferResponse__Output {
  /**
   * The transfer after the cancel.
   */
  'transfer': (_thinship_v1_TransferInfo__Output | null);
}
