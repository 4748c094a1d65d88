// Original file: proto/thinship/v1/receiver.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp.js';
import type { Long } from '@grpc/proto-loader';

/**
 * What a target holds: one complete received snapshot, as recorded at the
 * commit that wrote it (a stream applied in full, its End validated, the
 * target flushed). It does not expire, and only the next commit replaces it.
 */
export interface TargetRecord {
  /**
   * The source snapshot's identity as the stream named it (Begin.source_id;
   * thinship's sender sends the snapshot LV's uuid). The base_id an
   * incremental onto this target must name.
   */
  'sourceId'?: (string);
  /**
   * The base the stream that wrote it applied to (Begin.base_id, which was
   * the source_id of the record before); empty for a full stream.
   */
  'baseId'?: (string);
  /**
   * The source snapshot's name ("vg/lv"), when the stream said it: only
   * pipe-mode streams can (ApplyStream's Begin has no such field), so it is
   * empty after an apply over gRPC. Informative.
   */
  'snapshotName'?: (string);
  /**
   * Begin.volume_size_bytes of the stream that wrote it, in bytes.
   */
  'volumeSizeBytes'?: (number | string | Long);
  /**
   * The stream digest (End.digest, 32 bytes: the sha256 hash chain) of the
   * stream that wrote it, as the receiver verified it; empty when the
   * stream carried none (CHECKSUM_ALGORITHM_NONE, or a plain stream).
   */
  'digest'?: (Buffer | Uint8Array | string);
  /**
   * Begin.transfer_id of the transfer that wrote it ("pipe" for a stream
   * applied by pipe-mode `thinship recv`).
   */
  'transferId'?: (string);
  /**
   * When the commit happened, by the receiver's clock (millisecond
   * precision).
   */
  'receiveTime'?: (_google_protobuf_Timestamp | null);
}

/**
 * What a target holds: one complete received snapshot, as recorded at the
 * commit that wrote it (a stream applied in full, its End validated, the
 * target flushed). It does not expire, and only the next commit replaces it.
 */
export interface TargetRecord__Output {
  /**
   * The source snapshot's identity as the stream named it (Begin.source_id;
   * thinship's sender sends the snapshot LV's uuid). The base_id an
   * incremental onto this target must name.
   */
  'sourceId': (string);
  /**
   * The base the stream that wrote it applied to (Begin.base_id, which was
   * the source_id of the record before); empty for a full stream.
   */
  'baseId': (string);
  /**
   * The source snapshot's name ("vg/lv"), when the stream said it: only
   * pipe-mode streams can (ApplyStream's Begin has no such field), so it is
   * empty after an apply over gRPC. Informative.
   */
  'snapshotName': (string);
  /**
   * Begin.volume_size_bytes of the stream that wrote it, in bytes.
   */
  'volumeSizeBytes': (number);
  /**
   * The stream digest (End.digest, 32 bytes: the sha256 hash chain) of the
   * stream that wrote it, as the receiver verified it; empty when the
   * stream carried none (CHECKSUM_ALGORITHM_NONE, or a plain stream).
   */
  'digest': (Buffer);
  /**
   * Begin.transfer_id of the transfer that wrote it ("pipe" for a stream
   * applied by pipe-mode `thinship recv`).
   */
  'transferId': (string);
  /**
   * When the commit happened, by the receiver's clock (millisecond
   * precision).
   */
  'receiveTime': (_google_protobuf_Timestamp__Output | null);
}
