// Original file: proto/thinship/v1/receiver.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { AbortTransferRequest as _thinship_v1_AbortTransferRequest, AbortTransferRequest__Output as _thinship_v1_AbortTransferRequest__Output } from '../../thinship/v1/AbortTransferRequest.js';
import type { AbortTransferResponse as _thinship_v1_AbortTransferResponse, AbortTransferResponse__Output as _thinship_v1_AbortTransferResponse__Output } from '../../thinship/v1/AbortTransferResponse.js';
import type { ApplyStreamRequest as _thinship_v1_ApplyStreamRequest, ApplyStreamRequest__Output as _thinship_v1_ApplyStreamRequest__Output } from '../../thinship/v1/ApplyStreamRequest.js';
import type { ApplyStreamResponse as _thinship_v1_ApplyStreamResponse, ApplyStreamResponse__Output as _thinship_v1_ApplyStreamResponse__Output } from '../../thinship/v1/ApplyStreamResponse.js';
import type { GetTargetRequest as _thinship_v1_GetTargetRequest, GetTargetRequest__Output as _thinship_v1_GetTargetRequest__Output } from '../../thinship/v1/GetTargetRequest.js';
import type { GetTargetResponse as _thinship_v1_GetTargetResponse, GetTargetResponse__Output as _thinship_v1_GetTargetResponse__Output } from '../../thinship/v1/GetTargetResponse.js';
import type { GetTransferStateRequest as _thinship_v1_GetTransferStateRequest, GetTransferStateRequest__Output as _thinship_v1_GetTransferStateRequest__Output } from '../../thinship/v1/GetTransferStateRequest.js';
import type { GetTransferStateResponse as _thinship_v1_GetTransferStateResponse, GetTransferStateResponse__Output as _thinship_v1_GetTransferStateResponse__Output } from '../../thinship/v1/GetTransferStateResponse.js';
import type { ListTransfersRequest as _thinship_v1_ListTransfersRequest, ListTransfersRequest__Output as _thinship_v1_ListTransfersRequest__Output } from '../../thinship/v1/ListTransfersRequest.js';
import type { ListTransfersResponse as _thinship_v1_ListTransfersResponse, ListTransfersResponse__Output as _thinship_v1_ListTransfersResponse__Output } from '../../thinship/v1/ListTransfersResponse.js';

/**
 * The receiver: applies streams to targets, answers where a transfer stands,
 * and forgets abandoned transfers. Servers SHOULD also expose
 * grpc.health.v1.Health (service name "thinship.v1.ReceiverService") and
 * server reflection.
 */
export interface ReceiverServiceClient extends grpc.Client {
  /**
   * Forgets a transfer that will not be finished: stops its stream if one is
   * running, deletes its checkpoint and releases its target for other
   * transfers. A file or block-device target is rolled back to what it held
   * before the transfer (its staging file or undo journal); an LVM target's
   * staging LV is removed, so the LV keeps what it held.
   */
  AbortTransfer(argument: _thinship_v1_AbortTransferRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_AbortTransferResponse__Output>): grpc.ClientUnaryCall;
  AbortTransfer(argument: _thinship_v1_AbortTransferRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_AbortTransferResponse__Output>): grpc.ClientUnaryCall;
  AbortTransfer(argument: _thinship_v1_AbortTransferRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_AbortTransferResponse__Output>): grpc.ClientUnaryCall;
  AbortTransfer(argument: _thinship_v1_AbortTransferRequest, callback: grpc.requestCallback<_thinship_v1_AbortTransferResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Forgets a transfer that will not be finished: stops its stream if one is
   * running, deletes its checkpoint and releases its target for other
   * transfers. A file or block-device target is rolled back to what it held
   * before the transfer (its staging file or undo journal); an LVM target's
   * staging LV is removed, so the LV keeps what it held.
   */
  abortTransfer(argument: _thinship_v1_AbortTransferRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_AbortTransferResponse__Output>): grpc.ClientUnaryCall;
  abortTransfer(argument: _thinship_v1_AbortTransferRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_AbortTransferResponse__Output>): grpc.ClientUnaryCall;
  abortTransfer(argument: _thinship_v1_AbortTransferRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_AbortTransferResponse__Output>): grpc.ClientUnaryCall;
  abortTransfer(argument: _thinship_v1_AbortTransferRequest, callback: grpc.requestCallback<_thinship_v1_AbortTransferResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Applies one stream (or the rest of one, when resuming). The first message
   * MUST be a Begin; its protocol_version is checked before anything else
   * (FAILED_PRECONDITION naming both versions on a mismatch). Then Data and
   * Unmap in ascending, non-overlapping offset order, then exactly one End,
   * then the client half-closes. The response comes after the End has been
   * applied, the target flushed and the final checkpoint written.
   */
  ApplyStream(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_ApplyStreamResponse__Output>): grpc.ClientWritableStream<_thinship_v1_ApplyStreamRequest>;
  ApplyStream(metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_ApplyStreamResponse__Output>): grpc.ClientWritableStream<_thinship_v1_ApplyStreamRequest>;
  ApplyStream(options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_ApplyStreamResponse__Output>): grpc.ClientWritableStream<_thinship_v1_ApplyStreamRequest>;
  ApplyStream(callback: grpc.requestCallback<_thinship_v1_ApplyStreamResponse__Output>): grpc.ClientWritableStream<_thinship_v1_ApplyStreamRequest>;
  /**
   * Applies one stream (or the rest of one, when resuming). The first message
   * MUST be a Begin; its protocol_version is checked before anything else
   * (FAILED_PRECONDITION naming both versions on a mismatch). Then Data and
   * Unmap in ascending, non-overlapping offset order, then exactly one End,
   * then the client half-closes. The response comes after the End has been
   * applied, the target flushed and the final checkpoint written.
   */
  applyStream(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_ApplyStreamResponse__Output>): grpc.ClientWritableStream<_thinship_v1_ApplyStreamRequest>;
  applyStream(metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_ApplyStreamResponse__Output>): grpc.ClientWritableStream<_thinship_v1_ApplyStreamRequest>;
  applyStream(options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_ApplyStreamResponse__Output>): grpc.ClientWritableStream<_thinship_v1_ApplyStreamRequest>;
  applyStream(callback: grpc.requestCallback<_thinship_v1_ApplyStreamResponse__Output>): grpc.ClientWritableStream<_thinship_v1_ApplyStreamRequest>;
  
  /**
   * What a target holds, as the receiver recorded it at its last commit
   * (the record on a file target, in the receiver's state directory for a
   * block device, in the LV's tags for an LVM thin LV), whether it has
   * diverged since, and whether an apply is staged. Reads only: it changes nothing, and answers while a transfer
   * is applying to the target (the record is then still the last commit's).
   * The same access rules as ApplyStream, checked before the target is
   * looked at; refusals (gRPC code, ErrorInfo reason):
   * PERMISSION_DENIED, PERMISSION_DENIED: the caller's identity may not
   * write the target (another identity's, outside its directories and
   * devices, a name in a directory that does not exist, or not an
   * absolute normalised path nor "vg/lv"). Nothing is opened, and the
   * answer says nothing of the target, not even whether it exists.
   * NOT_FOUND, NOT_FOUND: the identity may write it, but nothing exists
   * at that name (nothing was received into it yet).
   * INVALID_ARGUMENT, BAD_STREAM: an empty name, or one too long or with
   * a NUL.
   * INVALID_ARGUMENT, USAGE: a path that is neither a regular file nor a
   * block device (a directory, a FIFO).
   * UNAUTHENTICATED: no verified client certificate.
   * Received snapshots: an LVM target keeps them as thin snapshots
   * (last_snapshot, kept_snapshots); a file or block-device target keeps
   * none besides what it holds now (the record's), so those stay empty.
   */
  GetTarget(argument: _thinship_v1_GetTargetRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_GetTargetResponse__Output>): grpc.ClientUnaryCall;
  GetTarget(argument: _thinship_v1_GetTargetRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_GetTargetResponse__Output>): grpc.ClientUnaryCall;
  GetTarget(argument: _thinship_v1_GetTargetRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_GetTargetResponse__Output>): grpc.ClientUnaryCall;
  GetTarget(argument: _thinship_v1_GetTargetRequest, callback: grpc.requestCallback<_thinship_v1_GetTargetResponse__Output>): grpc.ClientUnaryCall;
  /**
   * What a target holds, as the receiver recorded it at its last commit
   * (the record on a file target, in the receiver's state directory for a
   * block device, in the LV's tags for an LVM thin LV), whether it has
   * diverged since, and whether an apply is staged. Reads only: it changes nothing, and answers while a transfer
   * is applying to the target (the record is then still the last commit's).
   * The same access rules as ApplyStream, checked before the target is
   * looked at; refusals (gRPC code, ErrorInfo reason):
   * PERMISSION_DENIED, PERMISSION_DENIED: the caller's identity may not
   * write the target (another identity's, outside its directories and
   * devices, a name in a directory that does not exist, or not an
   * absolute normalised path nor "vg/lv"). Nothing is opened, and the
   * answer says nothing of the target, not even whether it exists.
   * NOT_FOUND, NOT_FOUND: the identity may write it, but nothing exists
   * at that name (nothing was received into it yet).
   * INVALID_ARGUMENT, BAD_STREAM: an empty name, or one too long or with
   * a NUL.
   * INVALID_ARGUMENT, USAGE: a path that is neither a regular file nor a
   * block device (a directory, a FIFO).
   * UNAUTHENTICATED: no verified client certificate.
   * Received snapshots: an LVM target keeps them as thin snapshots
   * (last_snapshot, kept_snapshots); a file or block-device target keeps
   * none besides what it holds now (the record's), so those stay empty.
   */
  getTarget(argument: _thinship_v1_GetTargetRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_GetTargetResponse__Output>): grpc.ClientUnaryCall;
  getTarget(argument: _thinship_v1_GetTargetRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_GetTargetResponse__Output>): grpc.ClientUnaryCall;
  getTarget(argument: _thinship_v1_GetTargetRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_GetTargetResponse__Output>): grpc.ClientUnaryCall;
  getTarget(argument: _thinship_v1_GetTargetRequest, callback: grpc.requestCallback<_thinship_v1_GetTargetResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The durable state of a transfer: where to resume and how to continue the
   * digest. NOT_FOUND for an unknown (or expired, or aborted) transfer id;
   * PERMISSION_DENIED when the transfer belongs to another client identity.
   */
  GetTransferState(argument: _thinship_v1_GetTransferStateRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_GetTransferStateResponse__Output>): grpc.ClientUnaryCall;
  GetTransferState(argument: _thinship_v1_GetTransferStateRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_GetTransferStateResponse__Output>): grpc.ClientUnaryCall;
  GetTransferState(argument: _thinship_v1_GetTransferStateRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_GetTransferStateResponse__Output>): grpc.ClientUnaryCall;
  GetTransferState(argument: _thinship_v1_GetTransferStateRequest, callback: grpc.requestCallback<_thinship_v1_GetTransferStateResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The durable state of a transfer: where to resume and how to continue the
   * digest. NOT_FOUND for an unknown (or expired, or aborted) transfer id;
   * PERMISSION_DENIED when the transfer belongs to another client identity.
   */
  getTransferState(argument: _thinship_v1_GetTransferStateRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_GetTransferStateResponse__Output>): grpc.ClientUnaryCall;
  getTransferState(argument: _thinship_v1_GetTransferStateRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_GetTransferStateResponse__Output>): grpc.ClientUnaryCall;
  getTransferState(argument: _thinship_v1_GetTransferStateRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_GetTransferStateResponse__Output>): grpc.ClientUnaryCall;
  getTransferState(argument: _thinship_v1_GetTransferStateRequest, callback: grpc.requestCallback<_thinship_v1_GetTransferStateResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The caller's own transfers that the receiver remembers (running,
   * resumable and completed, newest first); other identities' are not listed.
   */
  ListTransfers(argument: _thinship_v1_ListTransfersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  ListTransfers(argument: _thinship_v1_ListTransfersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  ListTransfers(argument: _thinship_v1_ListTransfersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  ListTransfers(argument: _thinship_v1_ListTransfersRequest, callback: grpc.requestCallback<_thinship_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The caller's own transfers that the receiver remembers (running,
   * resumable and completed, newest first); other identities' are not listed.
   */
  listTransfers(argument: _thinship_v1_ListTransfersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  listTransfers(argument: _thinship_v1_ListTransfersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  listTransfers(argument: _thinship_v1_ListTransfersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  listTransfers(argument: _thinship_v1_ListTransfersRequest, callback: grpc.requestCallback<_thinship_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  
}

/**
 * The receiver: applies streams to targets, answers where a transfer stands,
 * and forgets abandoned transfers. Servers SHOULD also expose
 * grpc.health.v1.Health (service name "thinship.v1.ReceiverService") and
 * server reflection.
 */
export interface ReceiverServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Forgets a transfer that will not be finished: stops its stream if one is
   * running, deletes its checkpoint and releases its target for other
   * transfers. A file or block-device target is rolled back to what it held
   * before the transfer (its staging file or undo journal); an LVM target's
   * staging LV is removed, so the LV keeps what it held.
   */
  AbortTransfer: grpc.handleUnaryCall<_thinship_v1_AbortTransferRequest__Output, _thinship_v1_AbortTransferResponse>;
  
  /**
   * Applies one stream (or the rest of one, when resuming). The first message
   * MUST be a Begin; its protocol_version is checked before anything else
   * (FAILED_PRECONDITION naming both versions on a mismatch). Then Data and
   * Unmap in ascending, non-overlapping offset order, then exactly one End,
   * then the client half-closes. The response comes after the End has been
   * applied, the target flushed and the final checkpoint written.
   */
  ApplyStream: grpc.handleClientStreamingCall<_thinship_v1_ApplyStreamRequest__Output, _thinship_v1_ApplyStreamResponse>;
  
  /**
   * What a target holds, as the receiver recorded it at its last commit
   * (the record on a file target, in the receiver's state directory for a
   * block device, in the LV's tags for an LVM thin LV), whether it has
   * diverged since, and whether an apply is staged. Reads only: it changes nothing, and answers while a transfer
   * is applying to the target (the record is then still the last commit's).
   * The same access rules as ApplyStream, checked before the target is
   * looked at; refusals (gRPC code, ErrorInfo reason):
   * PERMISSION_DENIED, PERMISSION_DENIED: the caller's identity may not
   * write the target (another identity's, outside its directories and
   * devices, a name in a directory that does not exist, or not an
   * absolute normalised path nor "vg/lv"). Nothing is opened, and the
   * answer says nothing of the target, not even whether it exists.
   * NOT_FOUND, NOT_FOUND: the identity may write it, but nothing exists
   * at that name (nothing was received into it yet).
   * INVALID_ARGUMENT, BAD_STREAM: an empty name, or one too long or with
   * a NUL.
   * INVALID_ARGUMENT, USAGE: a path that is neither a regular file nor a
   * block device (a directory, a FIFO).
   * UNAUTHENTICATED: no verified client certificate.
   * Received snapshots: an LVM target keeps them as thin snapshots
   * (last_snapshot, kept_snapshots); a file or block-device target keeps
   * none besides what it holds now (the record's), so those stay empty.
   */
  GetTarget: grpc.handleUnaryCall<_thinship_v1_GetTargetRequest__Output, _thinship_v1_GetTargetResponse>;
  
  /**
   * The durable state of a transfer: where to resume and how to continue the
   * digest. NOT_FOUND for an unknown (or expired, or aborted) transfer id;
   * PERMISSION_DENIED when the transfer belongs to another client identity.
   */
  GetTransferState: grpc.handleUnaryCall<_thinship_v1_GetTransferStateRequest__Output, _thinship_v1_GetTransferStateResponse>;
  
  /**
   * The caller's own transfers that the receiver remembers (running,
   * resumable and completed, newest first); other identities' are not listed.
   */
  ListTransfers: grpc.handleUnaryCall<_thinship_v1_ListTransfersRequest__Output, _thinship_v1_ListTransfersResponse>;
  
}

export interface ReceiverServiceDefinition extends grpc.ServiceDefinition {
  AbortTransfer: MethodDefinition<_thinship_v1_AbortTransferRequest, _thinship_v1_AbortTransferResponse, _thinship_v1_AbortTransferRequest__Output, _thinship_v1_AbortTransferResponse__Output>
  ApplyStream: MethodDefinition<_thinship_v1_ApplyStreamRequest, _thinship_v1_ApplyStreamResponse, _thinship_v1_ApplyStreamRequest__Output, _thinship_v1_ApplyStreamResponse__Output>
  GetTarget: MethodDefinition<_thinship_v1_GetTargetRequest, _thinship_v1_GetTargetResponse, _thinship_v1_GetTargetRequest__Output, _thinship_v1_GetTargetResponse__Output>
  GetTransferState: MethodDefinition<_thinship_v1_GetTransferStateRequest, _thinship_v1_GetTransferStateResponse, _thinship_v1_GetTransferStateRequest__Output, _thinship_v1_GetTransferStateResponse__Output>
  ListTransfers: MethodDefinition<_thinship_v1_ListTransfersRequest, _thinship_v1_ListTransfersResponse, _thinship_v1_ListTransfersRequest__Output, _thinship_v1_ListTransfersResponse__Output>
}
