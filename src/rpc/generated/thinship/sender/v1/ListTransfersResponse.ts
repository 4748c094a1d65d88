// Original file: proto/thinship/sender/v1/sender.proto

import type { TransferInfo as _thinship_sender_v1_TransferInfo, TransferInfo__Output as _thinship_sender_v1_TransferInfo__Output } from '../../../thinship/sender/v1/TransferInfo.js';

/**
 * Response of ListTransfers.
 */
export interface ListTransfersResponse {
  /**
   * The caller's transfers, newest first.
   */
  'transfers'?: (_thinship_sender_v1_TransferInfo)[];
}

/**
 * Response of ListTransfers.
 */
export interface ListTransfersResponse__Output {
  /**
   * The caller's transfers, newest first.
   */
  'transfers': (_thinship_sender_v1_TransferInfo__Output)[];
}
