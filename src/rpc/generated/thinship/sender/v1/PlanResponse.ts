// Original file: proto/thinship/sender/v1/sender.proto

import type { Long } from '@grpc/proto-loader';

/**
 * Response of Plan.
 */
export interface PlanResponse {
  /**
   * "full" or "incremental".
   */
  'mode'?: (string);
  /**
   * Bytes of data that would be read and sent.
   */
  'dataBytes'?: (number | string | Long);
  /**
   * Bytes that would be unmapped on the target.
   */
  'unmapBytes'?: (number | string | Long);
  /**
   * DATA records.
   */
  'dataOps'?: (number | string | Long);
  /**
   * UNMAP records.
   */
  'unmapOps'?: (number | string | Long);
  /**
   * Size of the volume in bytes.
   */
  'volumeSizeBytes'?: (number | string | Long);
  /**
   * The pool's block (chunk) size in bytes.
   */
  'blockSizeBytes'?: (number | string | Long);
}

/**
 * Response of Plan.
 */
export interface PlanResponse__Output {
  /**
   * "full" or "incremental".
   */
  'mode': (string);
  /**
   * Bytes of data that would be read and sent.
   */
  'dataBytes': (number);
  /**
   * Bytes that would be unmapped on the target.
   */
  'unmapBytes': (number);
  /**
   * DATA records.
   */
  'dataOps': (number);
  /**
   * UNMAP records.
   */
  'unmapOps': (number);
  /**
   * Size of the volume in bytes.
   */
  'volumeSizeBytes': (number);
  /**
   * The pool's block (chunk) size in bytes.
   */
  'blockSizeBytes': (number);
}
