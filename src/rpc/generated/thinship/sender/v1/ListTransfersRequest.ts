// Original file: proto/thinship/sender/v1/sender.proto


/**
 * Request of ListTransfers.
 */
export interface ListTransfersRequest {
}

/**
 * Request of ListTransfers.
 */
export interface ListTransfersRequest__Output {
}
