/**
 * The one error base class of thinship. Every failure a user can meet is a
 * ThinshipError with a stable `code` (scripts and the gRPC status mapping key
 * on it) and `retryable` (a retry of the same operation may succeed).
 * `cli/exit-codes.ts` maps codes to exit statuses; `rpc/` maps them to gRPC codes.
 */
export type ErrorCode =
  | 'USAGE'               // bad command line
  | 'NOT_FOUND'           // unknown LV, VG, device id, file
  | 'NOT_THIN'            // LV exists but is not a thin volume
  | 'INVALID_SOURCE'      // e.g. base and snapshot in different pools, base not older
  | 'LIVE_SOURCE'         // a writable, active LV given as the source without --allow-live
  | 'TOOL_FAILED'         // an external command failed in a way not classified below
  | 'TOOL_MISSING'        // an external command is not installed
  | 'TOOL_KILLED'         // an external command was killed by a signal
  | 'METADATA_SNAP_BUSY'  // reserve_metadata_snap gave EBUSY (someone else holds one)
  | 'NO_METADATA_SNAP'    // thin tool says "no current metadata snap"
  | 'POOL_INACTIVE'       // the pool's _tmeta device does not exist
  | 'BAD_METADATA'        // thin_dump / thin_delta output malformed or inconsistent
  | 'BAD_STREAM'          // a byte stream or message violates the protocol
  | 'CHECKSUM_MISMATCH'   // data does not match its checksum / digest
  | 'TARGET_TOO_SMALL'    // stream describes a volume larger than the target
  | 'TARGET_BUSY'         // target opened exclusively by someone else (mounted, in use)
  | 'IO_ERROR'            // read/write/discard on a device or file failed
  | 'ABORTED'             // cancelled here: a signal or an AbortSignal
  | 'TRANSFER_ABORTED'    // stopped by the receiver: AbortTransfer by an operator, or taken over by a newer call
  | 'LOCK_TIMEOUT'        // could not get the per-pool lock in time
  | 'PERMISSION_DENIED'   // the client's identity may not write this target (gRPC receiver)
  | 'UNAUTHENTICATED'     // TLS handshake or client certificate refused (wrong CA, expired, none)
  | 'PROTOCOL_MISMATCH'   // sender and receiver speak different protocol versions
  | 'TRANSFER_BUSY'       // the target is held by another transfer (running or resumable)
  | 'BASE_MISMATCH'       // an incremental stream's base is not what the target holds
  | 'DIVERGED'            // the target was written since its last received snapshot (--force applies over it)
  | 'RESUME_MISMATCH'     // a resume does not match the receiver's durable state of the transfer
  | 'UNAVAILABLE'         // the receiver cannot be reached, or the connection broke
  | 'INTERNAL';

export class ThinshipError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  /** Structured context for logs: offsets, names, argv. Never secrets. */
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, opts: { retryable?: boolean; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ThinshipError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
    this.details = opts.details ?? {};
  }
}

export function isThinshipError(e: unknown): e is ThinshipError {
  return e instanceof ThinshipError;
}

/** Wraps anything thrown into a ThinshipError (INTERNAL unless it already is one). */
export function asThinshipError(e: unknown): ThinshipError {
  if (e instanceof ThinshipError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const errno = (err as NodeJS.ErrnoException).code;
  if (errno === 'ENOENT') return new ThinshipError('NOT_FOUND', err.message, { cause: err });
  if (errno === 'EBUSY') return new ThinshipError('TARGET_BUSY', err.message, { cause: err });
  if (errno === 'EIO' || errno === 'ENOSPC' || errno === 'EROFS') return new ThinshipError('IO_ERROR', err.message, { cause: err });
  if (err.name === 'AbortError') return new ThinshipError('ABORTED', err.message, { cause: err });
  return new ThinshipError('INTERNAL', err.message, { cause: err });
}
