/**
 * The one error base class of thinship. Every failure a user can meet is a
 * ThinshipError with a stable `code` (scripts and the gRPC status mapping key
 * on it) and `retryable` (a retry of the same operation may succeed).
 * `cli/exit-codes.ts` maps codes to exit statuses; `rpc/` maps them to gRPC codes.
 */
export type ErrorCode =
  | 'USAGE' // bad command line
  | 'NOT_FOUND' // unknown LV, VG, device id, file
  | 'NOT_THIN' // LV exists but is not a thin volume
  | 'INVALID_SOURCE' // e.g. base and snapshot in different pools, base not older
  | 'LIVE_SOURCE' // a writable, active LV given as the source without --allow-live
  | 'TOOL_FAILED' // an external command failed in a way not classified below
  | 'TOOL_MISSING' // an external command is not installed
  | 'TOOL_KILLED' // an external command was killed by a signal
  | 'METADATA_SNAP_BUSY' // reserve_metadata_snap gave EBUSY (someone else holds one)
  | 'NO_METADATA_SNAP' // thin tool says "no current metadata snap"
  | 'POOL_INACTIVE' // the pool's _tmeta device does not exist
  | 'BAD_METADATA' // thin_dump / thin_delta output malformed or inconsistent
  | 'BAD_STREAM' // a byte stream or message violates the protocol
  | 'CHECKSUM_MISMATCH' // data does not match its checksum / digest
  | 'TARGET_TOO_SMALL' // stream describes a volume larger than the target
  | 'TARGET_BUSY' // target opened exclusively by someone else (mounted, in use)
  | 'IO_ERROR' // read/write/discard on a device or file failed
  | 'ABORTED' // cancelled here: a signal or an AbortSignal
  | 'TRANSFER_ABORTED' // stopped by the receiver: AbortTransfer by an operator, or taken over by a newer call
  | 'LOCK_TIMEOUT' // could not get the per-pool lock in time
  | 'PERMISSION_DENIED' // the client's identity may not write this target (gRPC receiver)
  | 'UNAUTHENTICATED' // TLS handshake or client certificate refused (wrong CA, expired, none)
  | 'PROTOCOL_MISMATCH' // sender and receiver speak different protocol versions
  | 'TRANSFER_BUSY' // the target is held by another transfer (running or resumable)
  | 'BASE_MISMATCH' // an incremental stream's base is not what the target holds
  | 'DIVERGED' // the target was written since its last received snapshot (--force applies over it)
  | 'RESUME_MISMATCH' // a resume does not match the receiver's durable state of the transfer
  | 'UNAVAILABLE' // the receiver cannot be reached, or the connection broke
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

/** The errno code of a failed system call ("ENOENT"), or undefined. */
export function errnoOf(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/**
 * Wraps anything thrown into a ThinshipError. What an errno means depends on
 * the operation (ENOENT opening a target, a missing tool, a missing state
 * file are different failures), so the code that knows the operation maps it
 * (receiver/target.ts, device/volume.ts, exec/run.ts, thin/pool-lock.ts...).
 * An errno that reaches this point unmapped is reported as IO_ERROR naming
 * the errno, never as a guess such as NOT_FOUND.
 */
export function asThinshipError(e: unknown): ThinshipError {
  if (e instanceof ThinshipError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const errno = errnoOf(err);
  if (err.name === 'AbortError') return new ThinshipError('ABORTED', err.message, { cause: err });
  if (errno !== undefined)
    return new ThinshipError('IO_ERROR', err.message, { details: { errno }, retryable: errno === 'EAGAIN' || errno === 'EINTR', cause: err });
  return new ThinshipError('INTERNAL', err.message, { cause: err });
}

/** Whether `e` is the reason `signal` was aborted with, or an error made from it by abortError. */
export function isAbortOf(e: unknown, signal: AbortSignal): boolean {
  return signal.aborted && (e === signal.reason || (e instanceof ThinshipError && e.cause === signal.reason));
}

/**
 * The error for work stopped because `signal` was aborted: its reason when
 * that is a ThinshipError (the CLI's carries the exit status for the signal),
 * with `context` (what was cleaned up) added to its message; else ABORTED.
 * `failure` is what the stopped work threw (a cancelled tool), kept in the details.
 */
export function abortError(signal: AbortSignal, context?: string, failure?: unknown): ThinshipError {
  const r: unknown = signal.reason;
  const failed = failure instanceof Error ? { stoppedWith: failure.message } : {};
  if (r instanceof ThinshipError) {
    if (context === undefined && failure === undefined) return r;
    return new ThinshipError(r.code, context === undefined ? r.message : `${r.message}; ${context}`, {
      retryable: r.retryable,
      details: { ...r.details, ...failed },
      cause: r,
    });
  }
  return new ThinshipError('ABORTED', `cancelled${context === undefined ? '' : `; ${context}`}`, { details: failed, cause: r });
}
