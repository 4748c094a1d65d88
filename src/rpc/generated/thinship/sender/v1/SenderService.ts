// Original file: proto/thinship/sender/v1/sender.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { CancelTransferRequest as _thinship_sender_v1_CancelTransferRequest, CancelTransferRequest__Output as _thinship_sender_v1_CancelTransferRequest__Output } from '../../../thinship/sender/v1/CancelTransferRequest.js';
import type { CancelTransferResponse as _thinship_sender_v1_CancelTransferResponse, CancelTransferResponse__Output as _thinship_sender_v1_CancelTransferResponse__Output } from '../../../thinship/sender/v1/CancelTransferResponse.js';
import type { GetTransferRequest as _thinship_sender_v1_GetTransferRequest, GetTransferRequest__Output as _thinship_sender_v1_GetTransferRequest__Output } from '../../../thinship/sender/v1/GetTransferRequest.js';
import type { GetTransferResponse as _thinship_sender_v1_GetTransferResponse, GetTransferResponse__Output as _thinship_sender_v1_GetTransferResponse__Output } from '../../../thinship/sender/v1/GetTransferResponse.js';
import type { ListTransfersRequest as _thinship_sender_v1_ListTransfersRequest, ListTransfersRequest__Output as _thinship_sender_v1_ListTransfersRequest__Output } from '../../../thinship/sender/v1/ListTransfersRequest.js';
import type { ListTransfersResponse as _thinship_sender_v1_ListTransfersResponse, ListTransfersResponse__Output as _thinship_sender_v1_ListTransfersResponse__Output } from '../../../thinship/sender/v1/ListTransfersResponse.js';
import type { PlanRequest as _thinship_sender_v1_PlanRequest, PlanRequest__Output as _thinship_sender_v1_PlanRequest__Output } from '../../../thinship/sender/v1/PlanRequest.js';
import type { PlanResponse as _thinship_sender_v1_PlanResponse, PlanResponse__Output as _thinship_sender_v1_PlanResponse__Output } from '../../../thinship/sender/v1/PlanResponse.js';
import type { StartTransferRequest as _thinship_sender_v1_StartTransferRequest, StartTransferRequest__Output as _thinship_sender_v1_StartTransferRequest__Output } from '../../../thinship/sender/v1/StartTransferRequest.js';
import type { StartTransferResponse as _thinship_sender_v1_StartTransferResponse, StartTransferResponse__Output as _thinship_sender_v1_StartTransferResponse__Output } from '../../../thinship/sender/v1/StartTransferResponse.js';
import type { WatchTransferRequest as _thinship_sender_v1_WatchTransferRequest, WatchTransferRequest__Output as _thinship_sender_v1_WatchTransferRequest__Output } from '../../../thinship/sender/v1/WatchTransferRequest.js';
import type { WatchTransferResponse as _thinship_sender_v1_WatchTransferResponse, WatchTransferResponse__Output as _thinship_sender_v1_WatchTransferResponse__Output } from '../../../thinship/sender/v1/WatchTransferResponse.js';

/**
 * Starts, watches and cancels sends from this host's thin pools.
 */
export interface SenderServiceClient extends grpc.Client {
  /**
   * Stops a transfer and releases everything it holds (the metadata
   * snapshot, the pool's turn, the receiver-side transfer: it is aborted
   * there too). Cancelling a finished transfer changes nothing.
   */
  CancelTransfer(argument: _thinship_sender_v1_CancelTransferRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_CancelTransferResponse__Output>): grpc.ClientUnaryCall;
  CancelTransfer(argument: _thinship_sender_v1_CancelTransferRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_CancelTransferResponse__Output>): grpc.ClientUnaryCall;
  CancelTransfer(argument: _thinship_sender_v1_CancelTransferRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_CancelTransferResponse__Output>): grpc.ClientUnaryCall;
  CancelTransfer(argument: _thinship_sender_v1_CancelTransferRequest, callback: grpc.requestCallback<_thinship_sender_v1_CancelTransferResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Stops a transfer and releases everything it holds (the metadata
   * snapshot, the pool's turn, the receiver-side transfer: it is aborted
   * there too). Cancelling a finished transfer changes nothing.
   */
  cancelTransfer(argument: _thinship_sender_v1_CancelTransferRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_CancelTransferResponse__Output>): grpc.ClientUnaryCall;
  cancelTransfer(argument: _thinship_sender_v1_CancelTransferRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_CancelTransferResponse__Output>): grpc.ClientUnaryCall;
  cancelTransfer(argument: _thinship_sender_v1_CancelTransferRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_CancelTransferResponse__Output>): grpc.ClientUnaryCall;
  cancelTransfer(argument: _thinship_sender_v1_CancelTransferRequest, callback: grpc.requestCallback<_thinship_sender_v1_CancelTransferResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * One of the caller's transfers.
   */
  GetTransfer(argument: _thinship_sender_v1_GetTransferRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_GetTransferResponse__Output>): grpc.ClientUnaryCall;
  GetTransfer(argument: _thinship_sender_v1_GetTransferRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_GetTransferResponse__Output>): grpc.ClientUnaryCall;
  GetTransfer(argument: _thinship_sender_v1_GetTransferRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_GetTransferResponse__Output>): grpc.ClientUnaryCall;
  GetTransfer(argument: _thinship_sender_v1_GetTransferRequest, callback: grpc.requestCallback<_thinship_sender_v1_GetTransferResponse__Output>): grpc.ClientUnaryCall;
  /**
   * One of the caller's transfers.
   */
  getTransfer(argument: _thinship_sender_v1_GetTransferRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_GetTransferResponse__Output>): grpc.ClientUnaryCall;
  getTransfer(argument: _thinship_sender_v1_GetTransferRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_GetTransferResponse__Output>): grpc.ClientUnaryCall;
  getTransfer(argument: _thinship_sender_v1_GetTransferRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_GetTransferResponse__Output>): grpc.ClientUnaryCall;
  getTransfer(argument: _thinship_sender_v1_GetTransferRequest, callback: grpc.requestCallback<_thinship_sender_v1_GetTransferResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The caller's transfers, newest first (finished ones are kept a while).
   */
  ListTransfers(argument: _thinship_sender_v1_ListTransfersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  ListTransfers(argument: _thinship_sender_v1_ListTransfersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  ListTransfers(argument: _thinship_sender_v1_ListTransfersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  ListTransfers(argument: _thinship_sender_v1_ListTransfersRequest, callback: grpc.requestCallback<_thinship_sender_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The caller's transfers, newest first (finished ones are kept a while).
   */
  listTransfers(argument: _thinship_sender_v1_ListTransfersRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  listTransfers(argument: _thinship_sender_v1_ListTransfersRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  listTransfers(argument: _thinship_sender_v1_ListTransfersRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  listTransfers(argument: _thinship_sender_v1_ListTransfersRequest, callback: grpc.requestCallback<_thinship_sender_v1_ListTransfersResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The exact dry run of a send: the same figures as `thinship plan --json`.
   * Nothing is sent; the metadata snapshot is held only while planning.
   */
  Plan(argument: _thinship_sender_v1_PlanRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_PlanResponse__Output>): grpc.ClientUnaryCall;
  Plan(argument: _thinship_sender_v1_PlanRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_PlanResponse__Output>): grpc.ClientUnaryCall;
  Plan(argument: _thinship_sender_v1_PlanRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_PlanResponse__Output>): grpc.ClientUnaryCall;
  Plan(argument: _thinship_sender_v1_PlanRequest, callback: grpc.requestCallback<_thinship_sender_v1_PlanResponse__Output>): grpc.ClientUnaryCall;
  /**
   * The exact dry run of a send: the same figures as `thinship plan --json`.
   * Nothing is sent; the metadata snapshot is held only while planning.
   */
  plan(argument: _thinship_sender_v1_PlanRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_PlanResponse__Output>): grpc.ClientUnaryCall;
  plan(argument: _thinship_sender_v1_PlanRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_PlanResponse__Output>): grpc.ClientUnaryCall;
  plan(argument: _thinship_sender_v1_PlanRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_PlanResponse__Output>): grpc.ClientUnaryCall;
  plan(argument: _thinship_sender_v1_PlanRequest, callback: grpc.requestCallback<_thinship_sender_v1_PlanResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * Queues a send and returns at once with its transfer id. Idempotent on
   * request_id: the same caller repeating a request_id gets the same transfer
   * (INVALID_ARGUMENT if the request differs from the first).
   */
  StartTransfer(argument: _thinship_sender_v1_StartTransferRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_StartTransferResponse__Output>): grpc.ClientUnaryCall;
  StartTransfer(argument: _thinship_sender_v1_StartTransferRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_StartTransferResponse__Output>): grpc.ClientUnaryCall;
  StartTransfer(argument: _thinship_sender_v1_StartTransferRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_StartTransferResponse__Output>): grpc.ClientUnaryCall;
  StartTransfer(argument: _thinship_sender_v1_StartTransferRequest, callback: grpc.requestCallback<_thinship_sender_v1_StartTransferResponse__Output>): grpc.ClientUnaryCall;
  /**
   * Queues a send and returns at once with its transfer id. Idempotent on
   * request_id: the same caller repeating a request_id gets the same transfer
   * (INVALID_ARGUMENT if the request differs from the first).
   */
  startTransfer(argument: _thinship_sender_v1_StartTransferRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_StartTransferResponse__Output>): grpc.ClientUnaryCall;
  startTransfer(argument: _thinship_sender_v1_StartTransferRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_thinship_sender_v1_StartTransferResponse__Output>): grpc.ClientUnaryCall;
  startTransfer(argument: _thinship_sender_v1_StartTransferRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_thinship_sender_v1_StartTransferResponse__Output>): grpc.ClientUnaryCall;
  startTransfer(argument: _thinship_sender_v1_StartTransferRequest, callback: grpc.requestCallback<_thinship_sender_v1_StartTransferResponse__Output>): grpc.ClientUnaryCall;
  
  /**
   * The transfer's state now, then every change (at most one a second while
   * bytes move) until it ends; the stream closes after the final state.
   */
  WatchTransfer(argument: _thinship_sender_v1_WatchTransferRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_thinship_sender_v1_WatchTransferResponse__Output>;
  WatchTransfer(argument: _thinship_sender_v1_WatchTransferRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_thinship_sender_v1_WatchTransferResponse__Output>;
  /**
   * The transfer's state now, then every change (at most one a second while
   * bytes move) until it ends; the stream closes after the final state.
   */
  watchTransfer(argument: _thinship_sender_v1_WatchTransferRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_thinship_sender_v1_WatchTransferResponse__Output>;
  watchTransfer(argument: _thinship_sender_v1_WatchTransferRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_thinship_sender_v1_WatchTransferResponse__Output>;
  
}

/**
 * Starts, watches and cancels sends from this host's thin pools.
 */
export interface SenderServiceHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Stops a transfer and releases everything it holds (the metadata
   * snapshot, the pool's turn, the receiver-side transfer: it is aborted
   * there too). Cancelling a finished transfer changes nothing.
   */
  CancelTransfer: grpc.handleUnaryCall<_thinship_sender_v1_CancelTransferRequest__Output, _thinship_sender_v1_CancelTransferResponse>;
  
  /**
   * One of the caller's transfers.
   */
  GetTransfer: grpc.handleUnaryCall<_thinship_sender_v1_GetTransferRequest__Output, _thinship_sender_v1_GetTransferResponse>;
  
  /**
   * The caller's transfers, newest first (finished ones are kept a while).
   */
  ListTransfers: grpc.handleUnaryCall<_thinship_sender_v1_ListTransfersRequest__Output, _thinship_sender_v1_ListTransfersResponse>;
  
  /**
   * The exact dry run of a send: the same figures as `thinship plan --json`.
   * Nothing is sent; the metadata snapshot is held only while planning.
   */
  Plan: grpc.handleUnaryCall<_thinship_sender_v1_PlanRequest__Output, _thinship_sender_v1_PlanResponse>;
  
  /**
   * Queues a send and returns at once with its transfer id. Idempotent on
   * request_id: the same caller repeating a request_id gets the same transfer
   * (INVALID_ARGUMENT if the request differs from the first).
   */
  StartTransfer: grpc.handleUnaryCall<_thinship_sender_v1_StartTransferRequest__Output, _thinship_sender_v1_StartTransferResponse>;
  
  /**
   * The transfer's state now, then every change (at most one a second while
   * bytes move) until it ends; the stream closes after the final state.
   */
  WatchTransfer: grpc.handleServerStreamingCall<_thinship_sender_v1_WatchTransferRequest__Output, _thinship_sender_v1_WatchTransferResponse>;
  
}

export interface SenderServiceDefinition extends grpc.ServiceDefinition {
  CancelTransfer: MethodDefinition<_thinship_sender_v1_CancelTransferRequest, _thinship_sender_v1_CancelTransferResponse, _thinship_sender_v1_CancelTransferRequest__Output, _thinship_sender_v1_CancelTransferResponse__Output>
  GetTransfer: MethodDefinition<_thinship_sender_v1_GetTransferRequest, _thinship_sender_v1_GetTransferResponse, _thinship_sender_v1_GetTransferRequest__Output, _thinship_sender_v1_GetTransferResponse__Output>
  ListTransfers: MethodDefinition<_thinship_sender_v1_ListTransfersRequest, _thinship_sender_v1_ListTransfersResponse, _thinship_sender_v1_ListTransfersRequest__Output, _thinship_sender_v1_ListTransfersResponse__Output>
  Plan: MethodDefinition<_thinship_sender_v1_PlanRequest, _thinship_sender_v1_PlanResponse, _thinship_sender_v1_PlanRequest__Output, _thinship_sender_v1_PlanResponse__Output>
  StartTransfer: MethodDefinition<_thinship_sender_v1_StartTransferRequest, _thinship_sender_v1_StartTransferResponse, _thinship_sender_v1_StartTransferRequest__Output, _thinship_sender_v1_StartTransferResponse__Output>
  WatchTransfer: MethodDefinition<_thinship_sender_v1_WatchTransferRequest, _thinship_sender_v1_WatchTransferResponse, _thinship_sender_v1_WatchTransferRequest__Output, _thinship_sender_v1_WatchTransferResponse__Output>
}
