// Original file: proto/thinship/v1/receiver.proto

import type { TransferStatus as _thinship_v1_TransferStatus, TransferStatus__Output as _thinship_v1_TransferStatus__Output } from '../../thinship/v1/TransferStatus.js';
import type { TransferMode as _thinship_v1_TransferMode, TransferMode__Output as _thinship_v1_TransferMode__Output } from '../../thinship/v1/TransferMode.js';
import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp.js';
import type { ChecksumAlgorithm as _thinship_v1_ChecksumAlgorithm, ChecksumAlgorithm__Output as _thinship_v1_ChecksumAlgorithm__Output } from '../../thinship/v1/ChecksumAlgorithm.js';
import type { Long } from '@grpc/proto-loader';

/**
 * The receiver's durable record of a transfer (what its checkpoint holds).
 */
export interface TransferState {
  /**
   * The transfer's id (Begin.transfer_id).
   */
  'transferId'?: (string);
  /**
   * IN_PROGRESS or COMPLETE.
   */
  'status'?: (_thinship_v1_TransferStatus);
  /**
   * The target as the sender named it.
   */
  'target'?: (string);
  /**
   * The mode the transfer began with.
   */
  'mode'?: (_thinship_v1_TransferMode);
  /**
   * Begin.source_id of the transfer.
   */
  'sourceId'?: (string);
  /**
   * Begin.base_id of the transfer (empty for FULL).
   */
  'baseId'?: (string);
  /**
   * Begin.volume_size_bytes of the transfer.
   */
  'volumeSizeBytes'?: (number | string | Long);
  /**
   * Every record below this offset has been applied and flushed to stable
   * storage; nothing at or above it is known to be. A resuming sender MUST
   * send Begin.resume_offset_bytes equal to this and only records above it.
   */
  'durableOffsetBytes'?: (number | string | Long);
  /**
   * The stream digest chain value d_i after the last durable record (32
   * bytes; 32 zero bytes at offset 0). A resuming sender continues its
   * digest from it.
   */
  'digestState'?: (Buffer | Uint8Array | string);
  /**
   * Number of Data records below durable_offset_bytes (to continue End's
   * whole-transfer counts).
   */
  'dataRecords'?: (number | string | Long);
  /**
   * Number of Unmap records below durable_offset_bytes.
   */
  'unmapRecords'?: (number | string | Long);
  /**
   * Sum of the lengths of those Data records.
   */
  'dataBytes'?: (number | string | Long);
  /**
   * Sum of the lengths of those Unmap records.
   */
  'unmapBytes'?: (number | string | Long);
  /**
   * True while an ApplyStream call is applying this transfer. A new call
   * with the same transfer_id from the same identity stops that call and
   * takes over (so a sender whose connection broke need not wait for the
   * receiver to notice).
   */
  'active'?: (boolean);
  /**
   * The last durable checkpoint (millisecond precision).
   */
  'updateTime'?: (_google_protobuf_Timestamp | null);
  /**
   * When an unfinished transfer not touched since will be forgotten (and its
   * target released). A complete transfer is remembered until then too.
   */
  'expireTime'?: (_google_protobuf_Timestamp | null);
  /**
   * Begin.checksum of the transfer: a resuming sender MUST use it. UNSPECIFIED
   * from receivers that predate this field (their transfers are SHA256 or
   * NONE, and they refuse BLAKE3).
   */
  'checksum'?: (_thinship_v1_ChecksumAlgorithm);
}

/**
 * The receiver's durable record of a transfer (what its checkpoint holds).
 */
export interface TransferState__Output {
  /**
   * The transfer's id (Begin.transfer_id).
   */
  'transferId': (string);
  /**
   * IN_PROGRESS or COMPLETE.
   */
  'status': (_thinship_v1_TransferStatus__Output);
  /**
   * The target as the sender named it.
   */
  'target': (string);
  /**
   * The mode the transfer began with.
   */
  'mode': (_thinship_v1_TransferMode__Output);
  /**
   * Begin.source_id of the transfer.
   */
  'sourceId': (string);
  /**
   * Begin.base_id of the transfer (empty for FULL).
   */
  'baseId': (string);
  /**
   * Begin.volume_size_bytes of the transfer.
   */
  'volumeSizeBytes': (number);
  /**
   * Every record below this offset has been applied and flushed to stable
   * storage; nothing at or above it is known to be. A resuming sender MUST
   * send Begin.resume_offset_bytes equal to this and only records above it.
   */
  'durableOffsetBytes': (number);
  /**
   * The stream digest chain value d_i after the last durable record (32
   * bytes; 32 zero bytes at offset 0). A resuming sender continues its
   * digest from it.
   */
  'digestState': (Buffer);
  /**
   * Number of Data records below durable_offset_bytes (to continue End's
   * whole-transfer counts).
   */
  'dataRecords': (number);
  /**
   * Number of Unmap records below durable_offset_bytes.
   */
  'unmapRecords': (number);
  /**
   * Sum of the lengths of those Data records.
   */
  'dataBytes': (number);
  /**
   * Sum of the lengths of those Unmap records.
   */
  'unmapBytes': (number);
  /**
   * True while an ApplyStream call is applying this transfer. A new call
   * with the same transfer_id from the same identity stops that call and
   * takes over (so a sender whose connection broke need not wait for the
   * receiver to notice).
   */
  'active': (boolean);
  /**
   * The last durable checkpoint (millisecond precision).
   */
  'updateTime': (_google_protobuf_Timestamp__Output | null);
  /**
   * When an unfinished transfer not touched since will be forgotten (and its
   * target released). A complete transfer is remembered until then too.
   */
  'expireTime': (_google_protobuf_Timestamp__Output | null);
  /**
   * Begin.checksum of the transfer: a resuming sender MUST use it. UNSPECIFIED
   * from receivers that predate this field (their transfers are SHA256 or
   * NONE, and they refuse BLAKE3).
   */
  'checksum': (_thinship_v1_ChecksumAlgorithm__Output);
}
