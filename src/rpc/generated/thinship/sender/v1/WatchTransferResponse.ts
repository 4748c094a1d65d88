// Original file: proto/thinship/sender/v1/sender.proto

import type { TransferInfo as _thinship_sender_v1_TransferInfo, TransferInfo__Output as _thinship_sender_v1_TransferInfo__Output } from '../../../thinship/sender/v1/TransferInfo.js';

/**
 * One state of a watched transfer.
 */
export interface WatchTransferResponse {
  /**
   * The transfer as it stands.
   */
  'transfer'?: (_thinship_sender_v1_TransferInfo | null);
}

/**
 * One state of a watched transfer.
 */
export interface WatchTransferResponse__Output {
  /**
   * The transfer as it stands.
   */
  'transfer': (_thinship_sender_v1_TransferInfo__Output | null);
}
