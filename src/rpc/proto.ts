/**
 * Loads proto/thinship/v1/receiver.proto (shipped with the package) and
 * describes the JavaScript shape of its messages as proto-loader produces
 * them: camelCase fields, uint64 as Number (the receiver checks every value
 * is a safe integer before using it), enums as their names, bytes as Buffer,
 * defaults filled in, and `kind` naming the oneof member that is set.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';
import { ThinshipError } from '../errors.js';

export const PROTOCOL_VERSION = 1;
export const RECEIVER_SERVICE = 'thinship.v1.Receiver';

export const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true };

/** The .proto file: dist/src/rpc -> repo root, or src/rpc when run from sources. */
export function receiverProtoPath(): string {
  for (const rel of ['../../../proto/thinship/v1/receiver.proto', '../../proto/thinship/v1/receiver.proto']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new ThinshipError('INTERNAL', 'proto/thinship/v1/receiver.proto is missing from the installation');
}

let cached: { def: protoLoader.PackageDefinition; service: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } | undefined;

export function receiverProto() {
  if (!cached) {
    const def = protoLoader.loadSync(receiverProtoPath(), LOADER_OPTIONS);
    const pkg = grpc.loadPackageDefinition(def) as unknown as { thinship: { v1: { Receiver: grpc.ServiceClientConstructor } } };
    const Client = pkg.thinship.v1.Receiver;
    cached = { def, service: Client.service, Client };
  }
  return cached;
}

export type PbTransferMode = 'TRANSFER_MODE_UNSPECIFIED' | 'TRANSFER_MODE_FULL' | 'TRANSFER_MODE_INCREMENTAL';
export type PbCompression = 'COMPRESSION_UNSPECIFIED' | 'COMPRESSION_NONE' | 'COMPRESSION_ZSTD';
export type PbChecksum = 'CHECKSUM_ALGORITHM_UNSPECIFIED' | 'CHECKSUM_ALGORITHM_NONE' | 'CHECKSUM_ALGORITHM_SHA256';
export type PbEncoding = 'ENCODING_UNSPECIFIED' | 'ENCODING_RAW' | 'ENCODING_ZSTD' | 'ENCODING_ZERO';
export type PbStatus = 'TRANSFER_STATUS_UNSPECIFIED' | 'TRANSFER_STATUS_IN_PROGRESS' | 'TRANSFER_STATUS_COMPLETE';

export interface PbBegin {
  protocolVersion: number;
  transferId: string;
  target: string;
  mode: PbTransferMode;
  volumeSizeBytes: number;
  blockSizeBytes: number;
  sourceId: string;
  baseId: string;
  plannedDataBytes: number;
  plannedUnmapBytes: number;
  resumeOffsetBytes: number;
  compression: PbCompression;
  checksum: PbChecksum;
  force?: boolean;
  grow?: boolean;
}

export interface PbData {
  offsetBytes: number;
  lengthBytes: number;
  payload: Buffer;
  encoding: PbEncoding;
  checksum: Buffer;
}

export interface PbUnmap {
  offsetBytes: number;
  lengthBytes: number;
}

export interface PbEnd {
  records: number;
  dataRecords: number;
  unmapRecords: number;
  dataBytes: number;
  unmapBytes: number;
  digest: Buffer;
}

export type PbApplyRequest =
  | { kind: 'begin'; begin: PbBegin }
  | { kind: 'data'; data: PbData }
  | { kind: 'unmap'; unmap: PbUnmap }
  | { kind: 'end'; end: PbEnd };

/** What arrives on the server: any field may be missing or of the wrong kind if the peer is hostile. */
export type PbApplyRequestIn = Partial<{ kind: string; begin: PbBegin; data: PbData; unmap: PbUnmap; end: PbEnd }>;

export interface PbTransferState {
  transferId: string;
  status: PbStatus;
  target: string;
  mode: PbTransferMode;
  sourceId: string;
  baseId: string;
  volumeSizeBytes: number;
  durableOffsetBytes: number;
  digestState: Buffer;
  dataRecords: number;
  unmapRecords: number;
  dataBytes: number;
  unmapBytes: number;
  active: boolean;
  updatedUnixMs: number;
  expiresUnixMs: number;
}

export interface PbApplyResponse {
  transferId: string;
  dataRecordsApplied: number;
  unmapRecordsApplied: number;
  bytesWritten: number;
  bytesDiscarded: number;
  digest: Buffer;
  state: PbTransferState;
}

export interface PbAbortResponse {
  transferId: string;
  stoppedActiveStream: boolean;
  durableOffsetBytes: number;
}
