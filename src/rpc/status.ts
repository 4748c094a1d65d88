/**
 * The one place that maps thinship error codes to gRPC status codes (server
 * side) and gRPC errors back to ThinshipErrors (client side). The stable
 * thinship code travels in the trailing metadata key `thinship-code`, so a
 * client can tell, say, a RESUME_MISMATCH from a PROTOCOL_MISMATCH although
 * both are FAILED_PRECONDITION.
 */
import * as grpc from '@grpc/grpc-js';
import { ThinshipError, asThinshipError, type ErrorCode } from '../errors.js';

export const CODE_METADATA_KEY = 'thinship-code';

const GRPC_BY_CODE: Record<ErrorCode, grpc.status> = {
  USAGE: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  NOT_THIN: grpc.status.FAILED_PRECONDITION,
  INVALID_SOURCE: grpc.status.INVALID_ARGUMENT,
  LIVE_SOURCE: grpc.status.FAILED_PRECONDITION,
  TOOL_FAILED: grpc.status.INTERNAL,
  TOOL_MISSING: grpc.status.INTERNAL,
  TOOL_KILLED: grpc.status.INTERNAL,
  METADATA_SNAP_BUSY: grpc.status.UNAVAILABLE,
  NO_METADATA_SNAP: grpc.status.FAILED_PRECONDITION,
  POOL_INACTIVE: grpc.status.FAILED_PRECONDITION,
  BAD_METADATA: grpc.status.INTERNAL,
  BAD_STREAM: grpc.status.INVALID_ARGUMENT,
  CHECKSUM_MISMATCH: grpc.status.DATA_LOSS,
  TARGET_TOO_SMALL: grpc.status.FAILED_PRECONDITION,
  TARGET_BUSY: grpc.status.FAILED_PRECONDITION,
  IO_ERROR: grpc.status.INTERNAL,
  ABORTED: grpc.status.ABORTED,
  LOCK_TIMEOUT: grpc.status.UNAVAILABLE,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PROTOCOL_MISMATCH: grpc.status.FAILED_PRECONDITION,
  TRANSFER_BUSY: grpc.status.ABORTED,
  RESUME_MISMATCH: grpc.status.FAILED_PRECONDITION,
  BASE_MISMATCH: grpc.status.FAILED_PRECONDITION,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  INTERNAL: grpc.status.INTERNAL,
};

export function grpcCodeOf(code: ErrorCode): grpc.status {
  return GRPC_BY_CODE[code] ?? grpc.status.INTERNAL;
}

/** A server-side error as a gRPC status (for a handler's callback). */
export function toServiceError(e: unknown): Partial<grpc.StatusObject> {
  const err = asThinshipError(e);
  const metadata = new grpc.Metadata();
  metadata.set(CODE_METADATA_KEY, err.code);
  // gRPC status messages travel in a header: keep them to one reasonable line.
  const details = err.message.replace(/[\r\n]+/g, ' ').slice(0, 2000);
  return { code: grpcCodeOf(err.code), details, metadata };
}

const CODE_BY_GRPC: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.INVALID_ARGUMENT]: 'BAD_STREAM',
  [grpc.status.DATA_LOSS]: 'CHECKSUM_MISMATCH',
  [grpc.status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [grpc.status.UNAUTHENTICATED]: 'UNAUTHENTICATED',
  [grpc.status.NOT_FOUND]: 'NOT_FOUND',
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'UNAVAILABLE',
  [grpc.status.CANCELLED]: 'ABORTED',
  [grpc.status.ABORTED]: 'ABORTED',
  [grpc.status.RESOURCE_EXHAUSTED]: 'BAD_STREAM',
  [grpc.status.UNIMPLEMENTED]: 'PROTOCOL_MISMATCH',
};

/** TLS failures show up as UNAVAILABLE with OpenSSL's words in the details. */
const TLS_FAILURE = /certificate|self[- ]signed|SSL|TLS|handshake|alert|unable to (get|verify)|CERT_|ERR_TLS|altnames/i;

/** True if the error came from a receiver's handler (not from the transport). */
export function fromReceiver(e: unknown): boolean {
  const md = (e as { metadata?: grpc.Metadata }).metadata;
  return md instanceof grpc.Metadata && md.get(CODE_METADATA_KEY).length > 0;
}

/** A client-side gRPC error as a ThinshipError; `where` says which call and server. */
export function fromServiceError(e: unknown, where: string): ThinshipError {
  if (e instanceof ThinshipError) return e;
  const se = e as Partial<grpc.ServiceError>;
  if (typeof se.code !== 'number') return asThinshipError(e);
  const md = se.metadata instanceof grpc.Metadata ? se.metadata.get(CODE_METADATA_KEY)[0] : undefined;
  const details = se.details ?? se.message ?? '';
  let code: ErrorCode = (typeof md === 'string' && md in GRPC_BY_CODE ? md as ErrorCode : undefined) ?? CODE_BY_GRPC[se.code as grpc.status] ?? 'INTERNAL';
  if (code === 'UNAVAILABLE' && md === undefined && TLS_FAILURE.test(details)) code = 'UNAUTHENTICATED';
  const retryable = code === 'UNAVAILABLE' || (md === undefined && (se.code === grpc.status.INTERNAL || se.code === grpc.status.UNKNOWN));
  const name = grpc.status[se.code as grpc.status] ?? String(se.code);
  return new ThinshipError(code, `${where}: ${name}: ${details}`, { retryable, details: { grpcCode: se.code, grpcStatus: name }, cause: e });
}
