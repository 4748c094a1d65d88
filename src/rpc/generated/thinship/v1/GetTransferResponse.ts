// Original file: proto/thinship/v1/sender.proto

import type { TransferInfo as _thinship_v1_TransferInfo, TransferInfo__Output as _thinship_v1_TransferInfo__Output } from '../../thinship/v1/TransferInfo.js';

/**
 * Response of GetTransfer.
 */
export interface GetTransferResponse {
  /**
   * The transfer.
   */
  'transfer'?: (_thinship_v1_TransferInfo | null);
}

/**
 * Response of GetTransfer.
 */
export interface GetTransferResponse__Output {
  /**
   * The transfer.
   */
  'transfer': (_thinship_v1_TransferInfo__Output | null);
}
