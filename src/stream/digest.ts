/**
 * Checksums carried with the stream (docs/stream-format.md, "Checksums and the
 * stream digest").
 *
 * - Per-DATA checksum: sha256 or BLAKE3 (the stream's begin says which) of the
 *   DATA payload as it is written to the volume (the uncompressed bytes), so it
 *   means the same over gRPC (zstd-compressed chunks) and over the LINBIT pipe.
 *   Both are 32 bytes. BLAKE3 costs ~4x less CPU per byte than Node's sha256
 *   here (docs/benchmarks.md) and is itself a cryptographic hash.
 * - Stream digest: a hash chain over a canonical, transport-independent encoding
 *   of every DATA and UNMAP record, in stream order:
 *
 *       d_0 = 32 zero bytes
 *       d_i = sha256(d_{i-1} || canonical(record_i))
 *
 *   Node's crypto cannot export the internal state of a running sha256, so a
 *   plain "sha256 over everything" could not be continued after a restart. With
 *   the chain, the current d (32 bytes) *is* the whole state: a receiver stores it
 *   with its checkpoint and a resumed transfer continues from it, giving the same
 *   final digest as an uninterrupted one.
 *
 * canonical(record) is 49 bytes:
 *   kind u8 (0 = DATA, 1 = UNMAP) | offsetBytes u64 BE | lengthBytes u64 BE |
 *   the payload's checksum for DATA (sha256 or BLAKE3), 32 zero bytes for UNMAP.
 * The chain itself is sha256 whatever the per-DATA checksum is.
 * Hashing the payload's checksum rather than the payload keeps the chain cheap
 * (one 81-byte hash per record) once the per-DATA checksums exist.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { ThinshipError } from '../errors.js';
import type { ChecksumAlgorithm } from './messages.js';
import type * as BlakeHash from '@napi-rs/blake-hash';

let blakeHashLib: typeof BlakeHash | undefined;
/**
 * The BLAKE3 package, loaded on first use: a native (napi-rs) package, required
 * so the CLI bundle keeps it external (scripts/bundle.mjs), and only when a
 * stream uses BLAKE3, so that a host where its binary does not load (another
 * libc, a missing shared library) still sends and receives sha256 streams.
 */
function blakeHash(): typeof BlakeHash {
  if (!blakeHashLib) {
    try {
      blakeHashLib = createRequire(import.meta.url)('@napi-rs/blake-hash') as typeof BlakeHash;
    } catch (e) {
      const why = (e as Error & { cause?: Error }).cause?.message ?? (e as Error).message;
      throw new ThinshipError(
        'TOOL_MISSING',
        `BLAKE3 checksums need the native package @napi-rs/blake-hash, which does not load on this host (${why.split('\n')[0]}): reinstall it (npm ci), or send with --checksum sha256`,
      );
    }
  }
  return blakeHashLib;
}

export const SHA256_BYTES = 32;
/** Bytes of a per-DATA checksum: both algorithms give 32. */
export const CHECKSUM_BYTES = 32;
const CANONICAL_RECORD_BYTES = 1 + 8 + 8 + CHECKSUM_BYTES;
const CANONICAL_KIND_DATA = 0;
const CANONICAL_KIND_UNMAP = 1;

const ZERO_HASH = Buffer.alloc(SHA256_BYTES);
const TWO_POW_32 = 0x1_0000_0000;

/** A per-DATA checksum algorithm (a stream with checksums). */
export type RecordChecksum = Exclude<ChecksumAlgorithm, 'none'>;

/** The per-DATA checksum (`algorithm`) of a payload (the bytes written to the volume). */
export function dataChecksum(data: Uint8Array, algorithm: RecordChecksum): Buffer {
  return algorithm === 'blake3' ? blakeHash().blake3(data) : createHash('sha256').update(data).digest();
}

/** A checksum fed a record's payload a piece at a time (a record decoded in pieces). */
export interface RunningChecksum {
  update(data: Uint8Array): RunningChecksum;
  digest(): Buffer;
}

export function runningChecksum(algorithm: RecordChecksum): RunningChecksum {
  if (algorithm === 'sha256') return createHash('sha256');
  const h = new (blakeHash().Blake3Hasher)();
  const running: RunningChecksum = {
    update: (data) => {
      h.update(data);
      return running;
    },
    digest: () => h.digestBuffer(),
  };
  return running;
}

/** Writes a non-negative safe integer as u64 big-endian (faster than BigInt). */
function writeU64(buf: Buffer, value: number, at: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_POW_32), at);
  buf.writeUInt32BE(value >>> 0, at + 4);
}

function checkUint(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ThinshipError('INTERNAL', `stream digest: ${name} must be a non-negative safe integer, got ${value}`);
  }
}

/** The 49-byte canonical encoding of one DATA (checksum given) or UNMAP (checksum omitted) record. */
export function canonicalRecord(kind: 'data' | 'unmap', offsetBytes: number, lengthBytes: number, checksum?: Uint8Array): Buffer {
  checkUint('offsetBytes', offsetBytes);
  checkUint('lengthBytes', lengthBytes);
  const out = Buffer.allocUnsafe(CANONICAL_RECORD_BYTES);
  out[0] = kind === 'data' ? CANONICAL_KIND_DATA : CANONICAL_KIND_UNMAP;
  writeU64(out, offsetBytes, 1);
  writeU64(out, lengthBytes, 9);
  if (kind === 'data') {
    if (checksum === undefined || checksum.length !== CHECKSUM_BYTES) {
      throw new ThinshipError('INTERNAL', `stream digest: a DATA record needs a ${CHECKSUM_BYTES}-byte checksum, got ${checksum?.length ?? 'none'}`);
    }
    out.set(checksum, 17);
  } else {
    ZERO_HASH.copy(out, 17);
  }
  return out;
}

/**
 * The running stream digest. `state` is the chain value d_i after the records
 * added so far; construct with a stored state to continue a resumed transfer.
 */
export class StreamDigest {
  private d: Buffer;
  private count = 0;

  constructor(state?: Uint8Array) {
    if (state !== undefined && state.length !== SHA256_BYTES) {
      throw new ThinshipError('INTERNAL', `stream digest state must be ${SHA256_BYTES} bytes, got ${state.length}`);
    }
    this.d = state === undefined ? Buffer.from(ZERO_HASH) : Buffer.from(state);
  }

  addData(offsetBytes: number, lengthBytes: number, checksum: Uint8Array): void {
    this.add(canonicalRecord('data', offsetBytes, lengthBytes, checksum));
  }

  addUnmap(offsetBytes: number, lengthBytes: number): void {
    this.add(canonicalRecord('unmap', offsetBytes, lengthBytes));
  }

  private add(canonical: Buffer): void {
    this.d = createHash('sha256').update(this.d).update(canonical).digest();
    this.count++;
  }

  /** A copy of the current chain value (d_0 = zeros before any record). */
  get state(): Buffer {
    return Buffer.from(this.d);
  }

  /** Records added since construction (not counting those before a resumed state). */
  get recordsAdded(): number {
    return this.count;
  }

  /** True when `other` equals the current chain value (constant-time not needed: nothing secret). */
  matches(other: Uint8Array): boolean {
    return other.length === SHA256_BYTES && this.d.equals(other);
  }
}
