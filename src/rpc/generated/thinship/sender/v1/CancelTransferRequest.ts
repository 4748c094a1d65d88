// Original file: proto/thinship/sender/v1/sender.proto


/**
 * Request of CancelTransfer.
 */
export interface CancelTransferRequest {
  /**
   * The transfer.
   */
  'transferId'?: (string);
  /**
   * Why, for the logs (here and on the receiver); at most 500 bytes are kept.
   */
  'reason'?: (string);
}

/**
 * Request of CancelTransfer.
 */
export interface CancelTransferRequest__Output {
  /**
   * The transfer.
   */
  'transferId': (string);
  /**
   * Why, for the logs (here and on the receiver); at most 500 bytes are kept.
   */
  'reason': (string);
}
