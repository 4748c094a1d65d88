// Original file: proto/thinship/sender/v1/sender.proto

import type { TransferInfo as _thinship_sender_v1_TransferInfo, TransferInfo__Output as _thinship_sender_v1_TransferInfo__Output } from '../../../thinship/sender/v1/TransferInfo.js';

/**
 * Response of StartTransfer.
 */
export interface StartTransferResponse {
  /**
   * The transfer, as it stands right after it was queued.
   */
  'transfer'?: (_thinship_sender_v1_TransferInfo | null);
}

/**
 * Response of StartTransfer.
 */
export interface StartTransferResponse__Output {
  /**
   * The transfer, as it stands right after it was queued.
   */
  'transfer': (_thinship_sender_v1_TransferInfo__Output | null);
}
