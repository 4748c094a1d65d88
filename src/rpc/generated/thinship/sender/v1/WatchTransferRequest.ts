// Original file: proto/thinship/sender/v1/sender.proto


/**
 * Request of WatchTransfer.
 */
export interface WatchTransferRequest {
  /**
   * The transfer to watch.
   */
  'transferId'?: (string);
}

/**
 * Request of WatchTransfer.
 */
export interface WatchTransferRequest__Output {
  /**
   * The transfer to watch.
   */
  'transferId': (string);
}
