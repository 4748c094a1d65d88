// Original file: proto/thinship/v1/receiver.proto


/**
 * Asks for the durable state of one transfer.
 */
export interface GetTransferStateRequest {
  /**
   * MUST be a valid transfer id (see Begin.transfer_id).
   */
  'transferId'?: (string);
}

/**
 * Asks for the durable state of one transfer.
 */
export interface GetTransferStateRequest__Output {
  /**
   * MUST be a valid transfer id (see Begin.transfer_id).
   */
  'transferId': (string);
}
