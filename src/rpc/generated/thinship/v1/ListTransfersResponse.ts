// Original file: proto/thinship/v1/receiver.proto

import type { TransferState as _thinship_v1_TransferState, TransferState__Output as _thinship_v1_TransferState__Output } from '../../thinship/v1/TransferState.js';

/**
 * The caller's transfers.
 */
export interface ListTransfersResponse {
  /**
   * Newest (last updated) first.
   */
  'transfers'?: (_thinship_v1_TransferState)[];
}

/**
 * The caller's transfers.
 */
export interface ListTransfersResponse__Output {
  /**
   * Newest (last updated) first.
   */
  'transfers': (_thinship_v1_TransferState__Output)[];
}
