// Original file: proto/thinship/sender/v1/sender.proto

import type { TransferInfo as _thinship_sender_v1_TransferInfo, TransferInfo__Output as _thinship_sender_v1_TransferInfo__Output } from '../../../thinship/sender/v1/TransferInfo.js';

/**
 * Response of GetTransfer.
 */
export interface GetTransferResponse {
  /**
   * The transfer.
   */
  'transfer'?: (_thinship_sender_v1_TransferInfo | null);
}

/**
 * Response of GetTransfer.
 */
export interface GetTransferResponse__Output {
  /**
   * The transfer.
   */
  'transfer': (_thinship_sender_v1_TransferInfo__Output | null);
}
