// Original file: proto/thinship/sender/v1/sender.proto

import type { Long } from '@grpc/proto-loader';

/**
 * Options of a send.
 */
export interface TransferOptions {
  /**
   * Send without zstd (RAW and ZERO chunks only).
   */
  'noCompress'?: (boolean);
  /**
   * At most this many bytes per second on the wire; 0: no limit.
   */
  'bandwidthLimitBytesPerSecond'?: (number | string | Long);
  /**
   * Resume attempts in a row without progress after a broken link; 0: 9.
   */
  'maxRetries'?: (number);
}

/**
 * Options of a send.
 */
export interface TransferOptions__Output {
  /**
   * Send without zstd (RAW and ZERO chunks only).
   */
  'noCompress': (boolean);
  /**
   * At most this many bytes per second on the wire; 0: no limit.
   */
  'bandwidthLimitBytesPerSecond': (number);
  /**
   * Resume attempts in a row without progress after a broken link; 0: 9.
   */
  'maxRetries': (number);
}
