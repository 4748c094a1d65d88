import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { Timestamp as _google_protobuf_Timestamp, Timestamp__Output as _google_protobuf_Timestamp__Output } from './google/protobuf/Timestamp.js';
import type { CancelTransferRequest as _thinship_sender_v1_CancelTransferRequest, CancelTransferRequest__Output as _thinship_sender_v1_CancelTransferRequest__Output } from './thinship/sender/v1/CancelTransferRequest.js';
import type { CancelTransferResponse as _thinship_sender_v1_CancelTransferResponse, CancelTransferResponse__Output as _thinship_sender_v1_CancelTransferResponse__Output } from './thinship/sender/v1/CancelTransferResponse.js';
import type { Destination as _thinship_sender_v1_Destination, Destination__Output as _thinship_sender_v1_Destination__Output } from './thinship/sender/v1/Destination.js';
import type { GetTransferRequest as _thinship_sender_v1_GetTransferRequest, GetTransferRequest__Output as _thinship_sender_v1_GetTransferRequest__Output } from './thinship/sender/v1/GetTransferRequest.js';
import type { GetTransferResponse as _thinship_sender_v1_GetTransferResponse, GetTransferResponse__Output as _thinship_sender_v1_GetTransferResponse__Output } from './thinship/sender/v1/GetTransferResponse.js';
import type { ListTransfersRequest as _thinship_sender_v1_ListTransfersRequest, ListTransfersRequest__Output as _thinship_sender_v1_ListTransfersRequest__Output } from './thinship/sender/v1/ListTransfersRequest.js';
import type { ListTransfersResponse as _thinship_sender_v1_ListTransfersResponse, ListTransfersResponse__Output as _thinship_sender_v1_ListTransfersResponse__Output } from './thinship/sender/v1/ListTransfersResponse.js';
import type { OfflinePool as _thinship_sender_v1_OfflinePool, OfflinePool__Output as _thinship_sender_v1_OfflinePool__Output } from './thinship/sender/v1/OfflinePool.js';
import type { PlanRequest as _thinship_sender_v1_PlanRequest, PlanRequest__Output as _thinship_sender_v1_PlanRequest__Output } from './thinship/sender/v1/PlanRequest.js';
import type { PlanResponse as _thinship_sender_v1_PlanResponse, PlanResponse__Output as _thinship_sender_v1_PlanResponse__Output } from './thinship/sender/v1/PlanResponse.js';
import type { SenderServiceClient as _thinship_sender_v1_SenderServiceClient, SenderServiceDefinition as _thinship_sender_v1_SenderServiceDefinition } from './thinship/sender/v1/SenderService.js';
import type { Source as _thinship_sender_v1_Source, Source__Output as _thinship_sender_v1_Source__Output } from './thinship/sender/v1/Source.js';
import type { StartTransferRequest as _thinship_sender_v1_StartTransferRequest, StartTransferRequest__Output as _thinship_sender_v1_StartTransferRequest__Output } from './thinship/sender/v1/StartTransferRequest.js';
import type { StartTransferResponse as _thinship_sender_v1_StartTransferResponse, StartTransferResponse__Output as _thinship_sender_v1_StartTransferResponse__Output } from './thinship/sender/v1/StartTransferResponse.js';
import type { TransferInfo as _thinship_sender_v1_TransferInfo, TransferInfo__Output as _thinship_sender_v1_TransferInfo__Output } from './thinship/sender/v1/TransferInfo.js';
import type { TransferOptions as _thinship_sender_v1_TransferOptions, TransferOptions__Output as _thinship_sender_v1_TransferOptions__Output } from './thinship/sender/v1/TransferOptions.js';
import type { WatchTransferRequest as _thinship_sender_v1_WatchTransferRequest, WatchTransferRequest__Output as _thinship_sender_v1_WatchTransferRequest__Output } from './thinship/sender/v1/WatchTransferRequest.js';
import type { WatchTransferResponse as _thinship_sender_v1_WatchTransferResponse, WatchTransferResponse__Output as _thinship_sender_v1_WatchTransferResponse__Output } from './thinship/sender/v1/WatchTransferResponse.js';

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
    sender: {
      v1: {
        CancelTransferRequest: MessageTypeDefinition<_thinship_sender_v1_CancelTransferRequest, _thinship_sender_v1_CancelTransferRequest__Output>
        CancelTransferResponse: MessageTypeDefinition<_thinship_sender_v1_CancelTransferResponse, _thinship_sender_v1_CancelTransferResponse__Output>
        Destination: MessageTypeDefinition<_thinship_sender_v1_Destination, _thinship_sender_v1_Destination__Output>
        GetTransferRequest: MessageTypeDefinition<_thinship_sender_v1_GetTransferRequest, _thinship_sender_v1_GetTransferRequest__Output>
        GetTransferResponse: MessageTypeDefinition<_thinship_sender_v1_GetTransferResponse, _thinship_sender_v1_GetTransferResponse__Output>
        ListTransfersRequest: MessageTypeDefinition<_thinship_sender_v1_ListTransfersRequest, _thinship_sender_v1_ListTransfersRequest__Output>
        ListTransfersResponse: MessageTypeDefinition<_thinship_sender_v1_ListTransfersResponse, _thinship_sender_v1_ListTransfersResponse__Output>
        OfflinePool: MessageTypeDefinition<_thinship_sender_v1_OfflinePool, _thinship_sender_v1_OfflinePool__Output>
        PlanRequest: MessageTypeDefinition<_thinship_sender_v1_PlanRequest, _thinship_sender_v1_PlanRequest__Output>
        PlanResponse: MessageTypeDefinition<_thinship_sender_v1_PlanResponse, _thinship_sender_v1_PlanResponse__Output>
        /**
         * Starts, watches and cancels sends from this host's thin pools.
         */
        SenderService: SubtypeConstructor<typeof grpc.Client, _thinship_sender_v1_SenderServiceClient> & { service: _thinship_sender_v1_SenderServiceDefinition }
        Source: MessageTypeDefinition<_thinship_sender_v1_Source, _thinship_sender_v1_Source__Output>
        StartTransferRequest: MessageTypeDefinition<_thinship_sender_v1_StartTransferRequest, _thinship_sender_v1_StartTransferRequest__Output>
        StartTransferResponse: MessageTypeDefinition<_thinship_sender_v1_StartTransferResponse, _thinship_sender_v1_StartTransferResponse__Output>
        TransferInfo: MessageTypeDefinition<_thinship_sender_v1_TransferInfo, _thinship_sender_v1_TransferInfo__Output>
        TransferOptions: MessageTypeDefinition<_thinship_sender_v1_TransferOptions, _thinship_sender_v1_TransferOptions__Output>
        WatchTransferRequest: MessageTypeDefinition<_thinship_sender_v1_WatchTransferRequest, _thinship_sender_v1_WatchTransferRequest__Output>
        WatchTransferResponse: MessageTypeDefinition<_thinship_sender_v1_WatchTransferResponse, _thinship_sender_v1_WatchTransferResponse__Output>
      }
    }
  }
}

