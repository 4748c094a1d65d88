import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from './google/protobuf/Timestamp.js';
import type { AbortTransferRequest as _thinship_v1_AbortTransferRequest, AbortTransferRequest__Output as _thinship_v1_AbortTransferRequest__Output } from './thinship/v1/AbortTransferRequest.js';
import type { AbortTransferResponse as _thinship_v1_AbortTransferResponse, AbortTransferResponse__Output as _thinship_v1_AbortTransferResponse__Output } from './thinship/v1/AbortTransferResponse.js';
import type { ApplyStreamRequest as _thinship_v1_ApplyStreamRequest, ApplyStreamRequest__Output as _thinship_v1_ApplyStreamRequest__Output } from './thinship/v1/ApplyStreamRequest.js';
import type { ApplyStreamResponse as _thinship_v1_ApplyStreamResponse, ApplyStreamResponse__Output as _thinship_v1_ApplyStreamResponse__Output } from './thinship/v1/ApplyStreamResponse.js';
import type { Begin as _thinship_v1_Begin, Begin__Output as _thinship_v1_Begin__Output } from './thinship/v1/Begin.js';
import type { Data as _thinship_v1_Data, Data__Output as _thinship_v1_Data__Output } from './thinship/v1/Data.js';
import type { End as _thinship_v1_End, End__Output as _thinship_v1_End__Output } from './thinship/v1/End.js';
import type { GetTargetRequest as _thinship_v1_GetTargetRequest, GetTargetRequest__Output as _thinship_v1_GetTargetRequest__Output } from './thinship/v1/GetTargetRequest.js';
import type { GetTargetResponse as _thinship_v1_GetTargetResponse, GetTargetResponse__Output as _thinship_v1_GetTargetResponse__Output } from './thinship/v1/GetTargetResponse.js';
import type { GetTransferStateRequest as _thinship_v1_GetTransferStateRequest, GetTransferStateRequest__Output as _thinship_v1_GetTransferStateRequest__Output } from './thinship/v1/GetTransferStateRequest.js';
import type { GetTransferStateResponse as _thinship_v1_GetTransferStateResponse, GetTransferStateResponse__Output as _thinship_v1_GetTransferStateResponse__Output } from './thinship/v1/GetTransferStateResponse.js';
import type { ListTransfersRequest as _thinship_v1_ListTransfersRequest, ListTransfersRequest__Output as _thinship_v1_ListTransfersRequest__Output } from './thinship/v1/ListTransfersRequest.js';
import type { ListTransfersResponse as _thinship_v1_ListTransfersResponse, ListTransfersResponse__Output as _thinship_v1_ListTransfersResponse__Output } from './thinship/v1/ListTransfersResponse.js';
import type { ReceiverServiceClient as _thinship_v1_ReceiverServiceClient, ReceiverServiceDefinition as _thinship_v1_ReceiverServiceDefinition } from './thinship/v1/ReceiverService.js';
import type { StagedApply as _thinship_v1_StagedApply, StagedApply__Output as _thinship_v1_StagedApply__Output } from './thinship/v1/StagedApply.js';
import type { TargetRecord as _thinship_v1_TargetRecord, TargetRecord__Output as _thinship_v1_TargetRecord__Output } from './thinship/v1/TargetRecord.js';
import type { TransferState as _thinship_v1_TransferState, TransferState__Output as _thinship_v1_TransferState__Output } from './thinship/v1/TransferState.js';
import type { Unmap as _thinship_v1_Unmap, Unmap__Output as _thinship_v1_Unmap__Output } from './thinship/v1/Unmap.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  google: {
    protobuf: {
      Timestamp: MessageTypeDefinition<_google_protobuf_Timestamp, _google_protobuf_Timestamp__Output>
    }
  }
  thinship: {
    v1: {
      AbortTransferRequest: MessageTypeDefinition<_thinship_v1_AbortTransferRequest, _thinship_v1_AbortTransferRequest__Output>
      AbortTransferResponse: MessageTypeDefinition<_thinship_v1_AbortTransferResponse, _thinship_v1_AbortTransferResponse__Output>
      ApplyStreamRequest: MessageTypeDefinition<_thinship_v1_ApplyStreamRequest, _thinship_v1_ApplyStreamRequest__Output>
      ApplyStreamResponse: MessageTypeDefinition<_thinship_v1_ApplyStreamResponse, _thinship_v1_ApplyStreamResponse__Output>
      Begin: MessageTypeDefinition<_thinship_v1_Begin, _thinship_v1_Begin__Output>
      ChecksumAlgorithm: EnumTypeDefinition
      Compression: EnumTypeDefinition
      Data: MessageTypeDefinition<_thinship_v1_Data, _thinship_v1_Data__Output>
      Encoding: EnumTypeDefinition
      End: MessageTypeDefinition<_thinship_v1_End, _thinship_v1_End__Output>
      GetTargetRequest: MessageTypeDefinition<_thinship_v1_GetTargetRequest, _thinship_v1_GetTargetRequest__Output>
      GetTargetResponse: MessageTypeDefinition<_thinship_v1_GetTargetResponse, _thinship_v1_GetTargetResponse__Output>
      GetTransferStateRequest: MessageTypeDefinition<_thinship_v1_GetTransferStateRequest, _thinship_v1_GetTransferStateRequest__Output>
      GetTransferStateResponse: MessageTypeDefinition<_thinship_v1_GetTransferStateResponse, _thinship_v1_GetTransferStateResponse__Output>
      ListTransfersRequest: MessageTypeDefinition<_thinship_v1_ListTransfersRequest, _thinship_v1_ListTransfersRequest__Output>
      ListTransfersResponse: MessageTypeDefinition<_thinship_v1_ListTransfersResponse, _thinship_v1_ListTransfersResponse__Output>
      /**
       * The receiver: applies streams to targets, answers where a transfer stands,
       * and forgets abandoned transfers. Servers SHOULD also expose
       * grpc.health.v1.Health (service name "thinship.v1.ReceiverService") and
       * server reflection.
       */
      ReceiverService: SubtypeConstructor<typeof grpc.Client, _thinship_v1_ReceiverServiceClient> & { service: _thinship_v1_ReceiverServiceDefinition }
      StagedApply: MessageTypeDefinition<_thinship_v1_StagedApply, _thinship_v1_StagedApply__Output>
      TargetRecord: MessageTypeDefinition<_thinship_v1_TargetRecord, _thinship_v1_TargetRecord__Output>
      TransferMode: EnumTypeDefinition
      TransferState: MessageTypeDefinition<_thinship_v1_TransferState, _thinship_v1_TransferState__Output>
      TransferStatus: EnumTypeDefinition
      Unmap: MessageTypeDefinition<_thinship_v1_Unmap, _thinship_v1_Unmap__Output>
    }
  }
}

