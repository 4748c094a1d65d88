// Original file: proto/thinship/sender/v1/sender.proto


/**
 * Request of GetTransfer.
 */
export interface GetTransferRequest {
  /**
   * The transfer.
   */
  'transferId'?: (string);
}

/**
 * Request of GetTransfer.
 */
export interface GetTransferRequest__Output {
  /**
   * The transfer.
   */
  'transferId': (string);
}
