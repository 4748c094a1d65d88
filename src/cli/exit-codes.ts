/**
 * The one place that maps error codes to exit statuses (documented in the
 * README). Scripts may rely on these numbers.
 */
import { asThinshipError, type ErrorCode } from '../errors.js';

const EXIT_BY_CODE: Record<ErrorCode, number> = {
  INTERNAL: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  NOT_THIN: 3,
  INVALID_SOURCE: 4,
  LIVE_SOURCE: 4,
  TOOL_FAILED: 5,
  TOOL_MISSING: 5,
  TOOL_KILLED: 5,
  METADATA_SNAP_BUSY: 6,
  NO_METADATA_SNAP: 6,
  POOL_INACTIVE: 6,
  LOCK_TIMEOUT: 6,
  BAD_METADATA: 7,
  BAD_STREAM: 10, // thin_recv exits 10 on a bad stream too
  CHECKSUM_MISMATCH: 10,
  TARGET_TOO_SMALL: 11,
  TARGET_BUSY: 11,
  IO_ERROR: 12,
  PERMISSION_DENIED: 13,
  UNAUTHENTICATED: 13,
  PROTOCOL_MISMATCH: 14,
  RESUME_MISMATCH: 14,
  BASE_MISMATCH: 14,
  DIVERGED: 14,
  TRANSFER_BUSY: 11,
  UNAVAILABLE: 15,
  TRANSFER_ABORTED: 16, // the receiver stopped it; not a signal of ours (130 would say SIGINT)
  ABORTED: 130,
};

export function exitCodeOf(e: unknown): number {
  const err = asThinshipError(e);
  const fromSignal = err.details.exitCode;
  if (err.code === 'ABORTED' && typeof fromSignal === 'number') return fromSignal; // 128 + signal number
  return EXIT_BY_CODE[err.code] ?? 1;
}
