// Original file: proto/thinship/v1/receiver.proto

import type { Long } from '@grpc/proto-loader';

/**
 * A range to make read back as zeros, freeing its space where the target can
 * (discard on thin LVs, hole punching on files).
 */
export interface Unmap {
  /**
   * The same ordering and range rules as Data.offset_bytes.
   */
  'offsetBytes'?: (number | string | Long);
  /**
   * MUST be > 0. No upper limit beyond the volume size.
   */
  'lengthBytes'?: (number | string | Long);
}

/**
 * A range to make read back as zeros, freeing its space where the target can
 * (discard on thin LVs, hole punching on files).
 */
export interface Unmap__Output {
  /**
   * The same ordering and range rules as Data.offset_bytes.
   */
  'offsetBytes': (number);
  /**
   * MUST be > 0. No upper limit beyond the volume size.
   */
  'lengthBytes': (number);
}
