// Original file: proto/thinship/v1/receiver.proto

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../google/protobuf/Timestamp.js';
import type { Long } from '@grpc/proto-loader';

/**
 * What a target holds: one complete received snapshot, as recorded at the
 * commit that wrote it.
 */
export interface TargetRecord {
  /**
   * The source snapshot's identity as the stream named it (Begin.source_id).
   */
  'sourceId'?: (string);
  /**
   * The base the stream that wrote it applied to; empty for a full stream.
   */
  'baseId'?: (string);
  /**
   * The source snapshot's name, when the sender said it; else empty.
   */
  'snapshotName'?: (string);
  /**
   * The volume size of the stream that wrote it.
   */
  'volumeSizeBytes'?: (number | string | Long);
  /**
   * The stream digest (End.digest) of the stream that wrote it; empty when
   * the stream carried none.
   */
  'digest'?: (Buffer | Uint8Array | string);
  /**
   * The transfer that wrote it ("pipe" for pipe-mode recv).
   */
  'transferId'?: (string);
  /**
   * When the commit happened.
   */
  'receiveTime'?: (_google_protobuf_Timestamp | null);
}

/**
 * What a target holds: one complete received snapshot, as recorded at the
 * commit that wrote it.
 */
export interface TargetRecord__Output {
  /**
   * The source snapshot's identity as the stream named it (Begin.source_id).
   */
  'sourceId': (string);
  /**
   * The base the stream that wrote it applied to; empty for a full stream.
   */
  'baseId': (string);
  /**
   * The source snapshot's name, when the sender said it; else empty.
   */
  'snapshotName': (string);
  /**
   * The volume size of the stream that wrote it.
   */
  'volumeSizeBytes': (number);
  /**
   * The stream digest (End.digest) of the stream that wrote it; empty when
   * the stream carried none.
   */
  'digest': (Buffer);
  /**
   * The transfer that wrote it ("pipe" for pipe-mode recv).
   */
  'transferId': (string);
  /**
   * When the commit happened.
   */
  'receiveTime': (_google_protobuf_Timestamp__Output | null);
}
