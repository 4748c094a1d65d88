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
  /**
   * Begin.force on the receiver (like `zfs recv -F`): apply over a target
   * written since its last received snapshot, or an incremental onto a target
   * with no record; the receiver says what it overwrote. The caller's ACL must
   * allow the destination as for any start.
   */
  'force'?: (boolean);
  /**
   * Begin.grow on the receiver: extend an existing file target smaller than
   * the volume (else refused, FAILED_PRECONDITION / TOO_SMALL).
   */
  'grow'?: (boolean);
  /**
   * The per-record checksum of a new transfer: "blake3" or "sha256"; empty:
   * the daemon's default, BLAKE3, falling back to sha256 for a receiver older
   * than BLAKE3 (a value given is not fallen back from). Anything else is
   * INVALID_ARGUMENT. A resumed transfer keeps the algorithm it began with.
   */
  'checksum'?: (string);
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
  /**
   * Begin.force on the receiver (like `zfs recv -F`): apply over a target
   * written since its last received snapshot, or an incremental onto a target
   * with no record; the receiver says what it overwrote. The caller's ACL must
   * allow the destination as for any start.
   */
  'force': (boolean);
  /**
   * Begin.grow on the receiver: extend an existing file target smaller than
   * the volume (else refused, FAILED_PRECONDITION / TOO_SMALL).
   */
  'grow': (boolean);
  /**
   * The per-record checksum of a new transfer: "blake3" or "sha256"; empty:
   * the daemon's default, BLAKE3, falling back to sha256 for a receiver older
   * than BLAKE3 (a value given is not fallen back from). Anything else is
   * INVALID_ARGUMENT. A resumed transfer keeps the algorithm it began with.
   */
  'checksum': (string);
}
