// Original file: proto/thinship/sender/v1/sender.proto

import type { Long } from '@grpc/proto-loader';

/**
 * A thin pool that is not active: its metadata and data as files or devices.
 */
export interface OfflinePool {
  /**
   * Path of the metadata file or device.
   */
  'metadataPath'?: (string);
  /**
   * Path of the data file or device.
   */
  'dataPath'?: (string);
  /**
   * Volume size in bytes (thin metadata does not record it); 0: the end of
   * the last mapping.
   */
  'volumeSizeBytes'?: (number | string | Long);
}

/**
 * A thin pool that is not active: its metadata and data as files or devices.
 */
export interface OfflinePool__Output {
  /**
   * Path of the metadata file or device.
   */
  'metadataPath': (string);
  /**
   * Path of the data file or device.
   */
  'dataPath': (string);
  /**
   * Volume size in bytes (thin metadata does not record it); 0: the end of
   * the last mapping.
   */
  'volumeSizeBytes': (number);
}
