// Original file: proto/thinship/v1/receiver.proto

import type { Long } from '@grpc/proto-loader';

/**
 * What AbortTransfer did.
 */
export interface AbortTransferResponse {
  /**
   * The transfer that was forgotten.
   */
  'transferId'?: (string);
  /**
   * True if a stream was running and was stopped.
   */
  'stoppedActiveStream'?: (boolean);
  /**
   * The durable offset when it was aborted: the target holds the stream's
   * records below it (and possibly some above).
   */
  'durableOffsetBytes'?: (number | string | Long);
}

/**
 * What AbortTransfer did.
 */
export interface AbortTransferResponse__Output {
  /**
   * The transfer that was forgotten.
   */
  'transferId': (string);
  /**
   * True if a stream was running and was stopped.
   */
  'stoppedActiveStream': (boolean);
  /**
   * The durable offset when it was aborted: the target holds the stream's
   * records below it (and possibly some above).
   */
  'durableOffsetBytes': (number);
}
