// Original file: proto/thinship/v1/receiver.proto


/**
 * Asks the receiver to forget one transfer.
 */
export interface AbortTransferRequest {
  /**
   * The transfer to forget (see Begin.transfer_id).
   */
  'transferId'?: (string);
  /**
   * Optional: why, for the receiver's log (at most 500 characters are kept).
   */
  'reason'?: (string);
}

/**
 * Asks the receiver to forget one transfer.
 */
export interface AbortTransferRequest__Output {
  /**
   * The transfer to forget (see Begin.transfer_id).
   */
  'transferId': (string);
  /**
   * Optional: why, for the receiver's log (at most 500 characters are kept).
   */
  'reason': (string);
}
