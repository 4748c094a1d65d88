// Original file: proto/thinship/sender/v1/sender.proto

import type { Source as _thinship_sender_v1_Source, Source__Output as _thinship_sender_v1_Source__Output } from '../../../thinship/sender/v1/Source.js';
import type { Destination as _thinship_sender_v1_Destination, Destination__Output as _thinship_sender_v1_Destination__Output } from '../../../thinship/sender/v1/Destination.js';
import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from '../../../google/protobuf/Timestamp.js';
import type { Long } from '@grpc/proto-loader';

// Original file: proto/thinship/sender/v1/sender.proto

/**
 * Where a transfer is in its life. (Nested: receiver.proto already has a
 * message TransferState in this package.)
 */
export const _thinship_sender_v1_TransferInfo_State = {
  /**
   * Not used.
   */
  STATE_UNSPECIFIED: 'STATE_UNSPECIFIED',
  /**
   * Waiting for a slot or for its pool's turn.
   */
  STATE_QUEUED: 'STATE_QUEUED',
  /**
   * Reading the pool metadata under a metadata snapshot.
   */
  STATE_PLANNING: 'STATE_PLANNING',
  /**
   * Sending records.
   */
  STATE_SENDING: 'STATE_SENDING',
  /**
   * The link broke or the receiver restarted: waiting to resume.
   */
  STATE_RESUMING: 'STATE_RESUMING',
  /**
   * All records sent; waiting for the receiver's final answer.
   */
  STATE_COMMITTING: 'STATE_COMMITTING',
  /**
   * The receiver has the whole stream, durably (a final state).
   */
  STATE_DONE: 'STATE_DONE',
  /**
   * Ended with an error (a final state; see error_code and error_message).
   */
  STATE_FAILED: 'STATE_FAILED',
  /**
   * Cancelled by CancelTransfer or by the daemon stopping (a final state).
   */
  STATE_CANCELLED: 'STATE_CANCELLED',
} as const;

/**
 * Where a transfer is in its life. (Nested: receiver.proto already has a
 * message TransferState in this package.)
 */
export type _thinship_sender_v1_TransferInfo_State =
  /**
   * Not used.
   */
  | 'STATE_UNSPECIFIED'
  | 0
  /**
   * Waiting for a slot or for its pool's turn.
   */
  | 'STATE_QUEUED'
  | 1
  /**
   * Reading the pool metadata under a metadata snapshot.
   */
  | 'STATE_PLANNING'
  | 2
  /**
   * Sending records.
   */
  | 'STATE_SENDING'
  | 3
  /**
   * The link broke or the receiver restarted: waiting to resume.
   */
  | 'STATE_RESUMING'
  | 4
  /**
   * All records sent; waiting for the receiver's final answer.
   */
  | 'STATE_COMMITTING'
  | 5
  /**
   * The receiver has the whole stream, durably (a final state).
   */
  | 'STATE_DONE'
  | 6
  /**
   * Ended with an error (a final state; see error_code and error_message).
   */
  | 'STATE_FAILED'
  | 7
  /**
   * Cancelled by CancelTransfer or by the daemon stopping (a final state).
   */
  | 'STATE_CANCELLED'
  | 8

/**
 * Where a transfer is in its life. (Nested: receiver.proto already has a
 * message TransferState in this package.)
 */
export type _thinship_sender_v1_TransferInfo_State__Output = typeof _thinship_sender_v1_TransferInfo_State[keyof typeof _thinship_sender_v1_TransferInfo_State]

/**
 * A transfer as the daemon knows it.
 */
export interface TransferInfo {
  /**
   * The daemon's id of the transfer (also the receiver-side transfer id).
   */
  'transferId'?: (string);
  /**
   * The request_id it was started with.
   */
  'requestId'?: (string);
  /**
   * What is sent.
   */
  'source'?: (_thinship_sender_v1_Source | null);
  /**
   * Where it goes.
   */
  'destination'?: (_thinship_sender_v1_Destination | null);
  /**
   * Where it is in its life.
   */
  'state'?: (_thinship_sender_v1_TransferInfo_State);
  /**
   * Data bytes the receiver has (resumed bytes included).
   */
  'doneBytes'?: (number | string | Long);
  /**
   * Data bytes of the whole send (0 until planned).
   */
  'totalBytes'?: (number | string | Long);
  /**
   * Over the last few seconds; 0 when not sending.
   */
  'bytesPerSecond'?: (number | string | Long);
  /**
   * Seconds left at that rate; 0 when unknown or finished.
   */
  'etaSeconds'?: (number | string | Long);
  /**
   * Resume retries so far.
   */
  'retries'?: (number);
  /**
   * The stable thinship code of the failure (FAILED only).
   */
  'errorCode'?: (string);
  /**
   * What went wrong, for a person (FAILED and CANCELLED).
   */
  'errorMessage'?: (string);
  /**
   * The stream digest the receiver confirmed, hex (DONE only).
   */
  'digest'?: (string);
  /**
   * When the transfer was started.
   */
  'createTime'?: (_google_protobuf_Timestamp | null);
  /**
   * When it reached its final state; unset while running.
   */
  'finishTime'?: (_google_protobuf_Timestamp | null);
}

/**
 * A transfer as the daemon knows it.
 */
export interface TransferInfo__Output {
  /**
   * The daemon's id of the transfer (also the receiver-side transfer id).
   */
  'transferId': (string);
  /**
   * The request_id it was started with.
   */
  'requestId': (string);
  /**
   * What is sent.
   */
  'source': (_thinship_sender_v1_Source__Output | null);
  /**
   * Where it goes.
   */
  'destination': (_thinship_sender_v1_Destination__Output | null);
  /**
   * Where it is in its life.
   */
  'state': (_thinship_sender_v1_TransferInfo_State__Output);
  /**
   * Data bytes the receiver has (resumed bytes included).
   */
  'doneBytes': (number);
  /**
   * Data bytes of the whole send (0 until planned).
   */
  'totalBytes': (number);
  /**
   * Over the last few seconds; 0 when not sending.
   */
  'bytesPerSecond': (number);
  /**
   * Seconds left at that rate; 0 when unknown or finished.
   */
  'etaSeconds': (number);
  /**
   * Resume retries so far.
   */
  'retries': (number);
  /**
   * The stable thinship code of the failure (FAILED only).
   */
  'errorCode': (string);
  /**
   * What went wrong, for a person (FAILED and CANCELLED).
   */
  'errorMessage': (string);
  /**
   * The stream digest the receiver confirmed, hex (DONE only).
   */
  'digest': (string);
  /**
   * When the transfer was started.
   */
  'createTime': (_google_protobuf_Timestamp__Output | null);
  /**
   * When it reached its final state; unset while running.
   */
  'finishTime': (_google_protobuf_Timestamp__Output | null);
}
