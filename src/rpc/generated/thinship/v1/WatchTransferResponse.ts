// Original file: proto/thinship/v1/sender.proto

import type { TransferInfo as _thinship_v1_TransferInfo, TransferInfo__Output as _thinship_v1_TransferInfo__Output } from '../../thinship/v1/TransferInfo.js';

/**
 * One state of a watched transfer.
 */
export interface WatchTransferResponse {
  /**
   * The transfer as it stands.
   */
  'transfer'?: (_thinship_v1_TransferInfo | null);
}

/**
 * One state of a watched transfer.
 */
export interface WatchTransferResponse__Output {
  /**
   * The transfer as it stands.
   */
  'transfer': (_thinship_v1_TransferInfo__Output | null);
}
