// Original file: proto/thinship/v1/receiver.proto


/**
 * Asks for the caller's transfers.
 */
export interface ListTransfersRequest {
}

/**
 * Asks for the caller's transfers.
 */
export interface ListTransfersRequest__Output {
}
