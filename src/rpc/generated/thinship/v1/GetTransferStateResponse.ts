// Original file: proto/thinship/v1/receiver.proto

import type { TransferState as _thinship_v1_TransferState, TransferState__Output as _thinship_v1_TransferState__Output } from '../../thinship/v1/TransferState.js';

/**
 * The durable state of the transfer asked for.
 */
export interface GetTransferStateResponse {
  /**
   * The transfer as the receiver's checkpoint records it.
   */
  'state'?: (_thinship_v1_TransferState | null);
}

/**
 * The durable state of the transfer asked for.
 */
export interface GetTransferStateResponse__Output {
  /**
   * The transfer as the receiver's checkpoint records it.
   */
  'state': (_thinship_v1_TransferState__Output | null);
}
