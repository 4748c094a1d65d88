/**
 * Loads proto/thinship/v1/receiver.proto (shipped with the package). The
 * TypeScript types of its messages are generated (src/rpc/generated/, by
 * `npm run gen:proto` with the same options as LOADER_OPTIONS): camelCase
 * fields, uint64 as Number (the receiver checks every value is a safe
 * integer before using it), enums as their names, bytes as Buffer, defaults
 * filled in, and `kind` naming the oneof member that is set. A `Foo` type is
 * what we may send, `Foo__Output` what we receive.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';
import { ThinshipError } from '../errors.js';
import type { ProtoGrpcType } from './generated/receiver.js';
import type { ReceiverServiceClient, ReceiverServiceDefinition } from './generated/thinship/v1/ReceiverService.js';
import type { Timestamp } from './generated/google/protobuf/Timestamp.js';
import type { ProtoGrpcType as SenderProtoGrpcType } from './generated/sender.js';
import type { SenderServiceClient } from './generated/thinship/sender/v1/SenderService.js';
import type { ChecksumAlgorithm as ChecksumAlgorithmProto } from './generated/thinship/v1/ChecksumAlgorithm.js';
import type { ChecksumAlgorithm } from '../stream/messages.js';
import { applyStreamSerializer } from './data-encoder.js';

export type { ApplyStreamRequest, ApplyStreamRequest__Output } from './generated/thinship/v1/ApplyStreamRequest.js';
export type { ApplyStreamResponse, ApplyStreamResponse__Output } from './generated/thinship/v1/ApplyStreamResponse.js';
export type { Begin__Output } from './generated/thinship/v1/Begin.js';
export type { TransferState, TransferState__Output } from './generated/thinship/v1/TransferState.js';
export type { AbortTransferResponse__Output } from './generated/thinship/v1/AbortTransferResponse.js';
export type { GetTargetResponse, GetTargetResponse__Output } from './generated/thinship/v1/GetTargetResponse.js';
export type { ReceiverServiceClient, ReceiverServiceHandlers } from './generated/thinship/v1/ReceiverService.js';
export type { SenderServiceClient } from './generated/thinship/sender/v1/SenderService.js';
export type { TransferInfo__Output as SenderTransferInfo } from './generated/thinship/sender/v1/TransferInfo.js';
export type { StartTransferRequest } from './generated/thinship/sender/v1/StartTransferRequest.js';

export const PROTOCOL_VERSION = 1;

/** A ChecksumAlgorithm's proto enum name (Begin.checksum, TransferState.checksum); server.ts maps back. */
export const CHECKSUM_PROTO_NAMES = {
  none: 'CHECKSUM_ALGORITHM_NONE',
  sha256: 'CHECKSUM_ALGORITHM_SHA256',
  blake3: 'CHECKSUM_ALGORITHM_BLAKE3',
} as const satisfies Record<ChecksumAlgorithm, ChecksumAlgorithmProto>;
/** The full name of the service (health checks and reflection use it too). */
export const RECEIVER_SERVICE = 'thinship.v1.ReceiverService';

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true };

/** The proto/ directory: dist/src/rpc -> repo root, or src/rpc and dist/bin (the bundle) -> repo root. */
export function protoRoot(): string {
  for (const rel of ['../../../proto/', '../../proto/']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${p}thinship/v1/receiver.proto`)) return p;
  }
  throw new ThinshipError('INTERNAL', 'proto/thinship/v1/receiver.proto is missing from the installation');
}

let cached: { def: protoLoader.PackageDefinition; service: ReceiverServiceDefinition; Client: ProtoGrpcType['thinship']['v1']['ReceiverService'] } | undefined;

export function receiverProto() {
  if (!cached) {
    const def = protoLoader.loadSync('thinship/v1/receiver.proto', { ...LOADER_OPTIONS, includeDirs: [protoRoot()] });
    // The one unchecked step: grpc-js builds the package from the definition at run time, and
    // the generated ProtoGrpcType describes what it builds from this .proto.
    const pkg = grpc.loadPackageDefinition(def) as unknown as ProtoGrpcType;
    const Client = pkg.thinship.v1.ReceiverService;
    cached = { def, service: Client.service, Client };
  }
  return cached;
}

const senderSideClients = new Map<boolean, ProtoGrpcType['thinship']['v1']['ReceiverService']>();

/**
 * A typed client of the receiver service. Its ApplyStream writes DATA
 * requests with rpc/data-encoder.ts (the generated encoder for the rest),
 * into recycled memory when the channel has retries disabled (the caller
 * then gives each request's memory back from its write callback:
 * releaseSerialized); the service definition the server uses is not changed.
 */
export function newReceiverClient(address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions): ReceiverServiceClient {
  const recycle = options?.['grpc.enable_retries'] === 0;
  let Client = senderSideClients.get(recycle);
  if (!Client) {
    const { service } = receiverProto();
    const requestSerialize = applyStreamSerializer(service.ApplyStream.requestSerialize, recycle);
    const methods = { ...service, ApplyStream: { ...service.ApplyStream, requestSerialize } };
    Client = grpc.makeClientConstructor(methods, 'ReceiverService') as unknown as ProtoGrpcType['thinship']['v1']['ReceiverService'];
    senderSideClients.set(recycle, Client);
  }
  return new Client(address, creds, options);
}

let senderCached: { def: protoLoader.PackageDefinition; Client: SenderProtoGrpcType['thinship']['sender']['v1']['SenderService'] } | undefined;

/** proto/thinship/sender/v1/sender.proto (the sender daemon's API), loaded like the receiver's. */
export function senderProto() {
  if (!senderCached) {
    const def = protoLoader.loadSync('thinship/sender/v1/sender.proto', { ...LOADER_OPTIONS, includeDirs: [protoRoot()] });
    // The same one unchecked step as receiverProto's.
    const pkg = grpc.loadPackageDefinition(def) as unknown as SenderProtoGrpcType;
    senderCached = { def, Client: pkg.thinship.sender.v1.SenderService };
  }
  return senderCached;
}

/** A typed client of the sender service. */
export function newSenderClient(address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions): SenderServiceClient {
  const { Client } = senderProto();
  return new Client(address, creds, options);
}

/** Milliseconds since the Unix epoch as a google.protobuf.Timestamp. */
export function timestampOfUnixMs(ms: number): Timestamp {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** A google.protobuf.Timestamp as milliseconds since the Unix epoch (0 when absent). */
export function unixMsOfTimestamp(t: { seconds: number; nanos: number } | null | undefined): number {
  return t ? t.seconds * 1000 + Math.floor(t.nanos / 1_000_000) : 0;
}
