/**
 * The one place that maps thinship error codes to gRPC status codes (server
 * side) and gRPC errors back to ThinshipErrors (client side). Errors travel
 * in gRPC's standard rich error model (AIP-193): the trailer
 * `grpc-status-details-bin` holds a google.rpc.Status whose details carry one
 * google.rpc.ErrorInfo { reason: the stable thinship code, domain:
 * "thinship", metadata: { retryable: "true"|"false", volumeOffsetBytes } },
 * so a client in any language can tell, say, a RESUME_MISMATCH from a
 * PROTOCOL_MISMATCH although both are FAILED_PRECONDITION, and whether a retry
 * of the same call may succeed (e.g. a receiver at its transfer limit).
 * receiver.proto's header says how other languages read it.
 */
import protobuf from 'protobufjs';
import * as grpc from '@grpc/grpc-js';
import { ThinshipError, asThinshipError, type ErrorCode } from '../errors.js';
import { protoRoot } from './proto.js';
import type { Status, Status__Output } from './generated/google/rpc/Status.js';
import type { ErrorInfo, ErrorInfo__Output } from './generated/google/rpc/ErrorInfo.js';

/** The trailer of the rich error model (a serialized google.rpc.Status). */
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';
/** ErrorInfo.domain of every thinship error. */
export const ERROR_DOMAIN = 'thinship';
const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';

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
  TRANSFER_ABORTED: grpc.status.ABORTED,
  LOCK_TIMEOUT: grpc.status.UNAVAILABLE,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PROTOCOL_MISMATCH: grpc.status.FAILED_PRECONDITION,
  TRANSFER_BUSY: grpc.status.ABORTED,
  RESUME_MISMATCH: grpc.status.FAILED_PRECONDITION,
  BASE_MISMATCH: grpc.status.FAILED_PRECONDITION,
  DIVERGED: grpc.status.FAILED_PRECONDITION,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  INTERNAL: grpc.status.INTERNAL,
};

export function grpcCodeOf(code: ErrorCode): grpc.status {
  return GRPC_BY_CODE[code] ?? grpc.status.INTERNAL;
}

let richTypes: { status: protobuf.Type; errorInfo: protobuf.Type } | undefined;

/** google.rpc.Status and ErrorInfo from proto/google/rpc (google/protobuf/* come with protobufjs). */
function rich(): { status: protobuf.Type; errorInfo: protobuf.Type } {
  if (!richTypes) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : `${protoRoot()}${target}`);
    root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
    richTypes = { status: root.lookupType('google.rpc.Status'), errorInfo: root.lookupType('google.rpc.ErrorInfo') };
  }
  return richTypes;
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, bytes: Buffer, defaults: true };

/** A google.rpc.Status with one ErrorInfo, serialized for the STATUS_DETAILS_KEY trailer. */
function encodeRichStatus(code: grpc.status, message: string, info: ErrorInfo): Buffer {
  const t = rich();
  const detail = t.errorInfo.encode(t.errorInfo.fromObject(info)).finish();
  const st: Status = { code, message, details: [{ type_url: ERROR_INFO_TYPE_URL, value: detail }] };
  return Buffer.from(t.status.encode(t.status.fromObject(st)).finish());
}

/**
 * The ErrorInfo in a call's trailers, or undefined when there is none (or it
 * does not decode: a peer that is not a thinship receiver).
 */
export function errorInfoOf(metadata: grpc.Metadata | undefined): ErrorInfo__Output | undefined {
  const bin = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!Buffer.isBuffer(bin)) return undefined;
  try {
    const t = rich();
    const st = t.status.toObject(t.status.decode(bin), TO_OBJECT) as Status__Output;
    const any = st.details.find((d) => d.type_url === ERROR_INFO_TYPE_URL);
    return any ? (t.errorInfo.toObject(t.errorInfo.decode(any.value), TO_OBJECT) as ErrorInfo__Output) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The reason a receiver sends for a ThinshipError. ABORTED inside the
 * receiver means it stopped the transfer (AbortTransfer, or a takeover by a
 * newer call): to the sender that is TRANSFER_ABORTED, not its own cancel.
 */
function reasonOf(code: ErrorCode): ErrorCode {
  return code === 'ABORTED' ? 'TRANSFER_ABORTED' : code;
}

/** A server-side error as a gRPC status (for a handler's callback). */
export function toServiceError(e: unknown): Partial<grpc.StatusObject> {
  const err = asThinshipError(e);
  const code = grpcCodeOf(err.code);
  // gRPC status messages travel in a header: keep them to one reasonable line.
  const details = err.message.replace(/[\r\n]+/g, ' ').slice(0, 2000);
  const info: Record<string, string> = { retryable: String(err.retryable) };
  const offset = err.details.volumeOffset;
  if (typeof offset === 'number' && Number.isSafeInteger(offset)) info.volumeOffsetBytes = String(offset);
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_DETAILS_KEY, encodeRichStatus(code, details, { reason: reasonOf(err.code), domain: ERROR_DOMAIN, metadata: info }));
  return { code, details, metadata };
}

const CODE_BY_GRPC: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.INVALID_ARGUMENT]: 'BAD_STREAM',
  [grpc.status.DATA_LOSS]: 'CHECKSUM_MISMATCH',
  [grpc.status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [grpc.status.UNAUTHENTICATED]: 'UNAUTHENTICATED',
  [grpc.status.NOT_FOUND]: 'NOT_FOUND',
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'UNAVAILABLE',
  // CANCELLED reaches a client when it cancelled the call itself (our signal or AbortSignal).
  [grpc.status.CANCELLED]: 'ABORTED',
  // ABORTED only comes from the server: it stopped the transfer (not a signal of ours).
  [grpc.status.ABORTED]: 'TRANSFER_ABORTED',
  [grpc.status.RESOURCE_EXHAUSTED]: 'BAD_STREAM',
  [grpc.status.UNIMPLEMENTED]: 'PROTOCOL_MISMATCH',
};

/**
 * How a connection failed, read from grpc-js's status details. grpc-js puts
 * the last socket or TLS error's message there ("No connection established.
 * Last error: Error: connect ECONNREFUSED 127.0.0.1:7443. …"); a connection
 * that the peer closed without an error leaves only "Failed to connect".
 */
export type TransportFailure =
  | { kind: 'connect'; reason: string } // nothing answers: refused, no route, name not found, timeout
  | { kind: 'dropped'; reason: string } // closed or reset before the TLS handshake completed
  | { kind: 'server-certificate'; reason: string } // the receiver's certificate failed our verification
  | { kind: 'closed'; reason: string } // closed without an error after connecting (the client certificate may have been refused)
  | { kind: 'other'; reason: string };

/** Socket errors of a TCP connect that found nobody. */
export const CONNECT_ERRNOS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  ENOTFOUND: 'name not found',
  EAI_AGAIN: 'name lookup failed (temporary)',
  EADDRNOTAVAIL: 'address not available',
};

/**
 * Node's messages for the X.509 verification errors of a server certificate
 * (OpenSSL's X509_verify_cert_error_string), plus its host name check.
 */
const SERVER_CERT_MESSAGES = [
  'self-signed certificate in certificate chain',
  'self-signed certificate',
  'unable to get local issuer certificate',
  'unable to verify the first certificate',
  'unable to get issuer certificate',
  'certificate has expired',
  'certificate is not yet valid',
  'certificate signature failure',
  'certificate not trusted',
  'certificate revoked',
  'unsupported certificate purpose',
  'certificate rejected',
  "Hostname/IP does not match certificate's altnames",
];

export function transportFailure(details: string): TransportFailure {
  const last = /Last error: (.*?)(?:\. Resolution note:.*)?$/s.exec(details)?.[1]?.trim() ?? details.trim();
  const errno = /\b(E[A-Z_]+)\b/.exec(last)?.[1];
  if (/^Name resolution failed/.test(details)) return { kind: 'connect', reason: `name not found (${details})` };
  if (errno && errno in CONNECT_ERRNOS && /\bconnect\b|getaddrinfo/.test(last))
    return { kind: 'connect', reason: `${CONNECT_ERRNOS[errno]} (${last.replace(/^Error: /, '')})` };
  if (/disconnected before secure TLS connection was established|ECONNRESET|Connection closed before starting HTTP\/2 handshake/.test(last))
    return { kind: 'dropped', reason: last.replace(/^Error: /, '') };
  if (last.includes('ERR_TLS_CERT_ALTNAME_INVALID') || SERVER_CERT_MESSAGES.some((m) => last.replace(/^Error: /, '').startsWith(m))) {
    return { kind: 'server-certificate', reason: last.replace(/^Error(?: \[\w+\])?: /, '') };
  }
  if (/^Failed to connect\b/.test(last)) return { kind: 'closed', reason: last };
  return { kind: 'other', reason: last };
}

/** The ErrorInfo of a thinship receiver's error, if the error came from one. */
function receiverErrorInfo(e: unknown): ErrorInfo__Output | undefined {
  const md = (e as { metadata?: unknown }).metadata;
  const info = md instanceof grpc.Metadata ? errorInfoOf(md) : undefined;
  return info?.domain === ERROR_DOMAIN ? info : undefined;
}

/** True if the error came from a receiver's handler (not from the transport). */
export function fromReceiver(e: unknown): boolean {
  return receiverErrorInfo(e) !== undefined;
}

/**
 * A client-side gRPC error as a ThinshipError; `where` says which call and
 * server. A transport failure keeps its classification in
 * `details.transport` (see transportFailure); a failure of the TLS
 * handshake the client can see (the receiver's certificate) is UNAUTHENTICATED.
 */
export function fromServiceError(e: unknown, where: string): ThinshipError {
  if (e instanceof ThinshipError) return e;
  const se = e as Partial<grpc.ServiceError>;
  if (typeof se.code !== 'number') return asThinshipError(e);
  const info = receiverErrorInfo(e);
  const md = info?.reason;
  const serverRetryable = info?.metadata.retryable === 'true';
  const details = se.details ?? se.message ?? '';
  let code: ErrorCode = (md !== undefined && md in GRPC_BY_CODE ? (md as ErrorCode) : undefined) ?? CODE_BY_GRPC[se.code] ?? 'INTERNAL';
  const name = grpc.status[se.code] ?? String(se.code);
  const extra: Record<string, unknown> = { grpcCode: se.code, grpcStatus: name };
  const offset = Number(info?.metadata.volumeOffsetBytes ?? Number.NaN);
  if (Number.isSafeInteger(offset)) extra.volumeOffset = offset;
  let retryable = serverRetryable || code === 'UNAVAILABLE' || (md === undefined && (se.code === grpc.status.INTERNAL || se.code === grpc.status.UNKNOWN));
  let message = `${where}: ${name}: ${details}`;
  if (md === undefined && se.code === grpc.status.UNAVAILABLE) {
    const t = transportFailure(details);
    extra.transport = t;
    if (t.kind === 'server-certificate') {
      code = 'UNAUTHENTICATED';
      retryable = false;
      message = `${where}: the receiver's certificate is not trusted: ${t.reason}`;
    }
  }
  return new ThinshipError(code, message, { retryable, details: extra, cause: e });
}
