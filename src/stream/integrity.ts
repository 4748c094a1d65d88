/**
 * The integrity core: the stream's rules, written once for both transports.
 *
 * Sending side: every DATA gets its checksum, sha256 or BLAKE3 as the begin
 * says (withDataChecksum; DEFAULT_CHECKSUM when the sender was not told), and a
 * StreamLedger chains the stream digest and counts the records in stream
 * order; the end carries what the ledger says (ledger.seal()).
 * Receiving side: the same ledger, fed in the same order, is what the End's
 * counts and digest are compared with (endCountMismatch, digestMatches);
 * checkDataChecksum and zeroChecksumMatches compare a payload with its
 * sender's checksum; rangeFault (bounds) and AscendingRecords (order) say
 * whether a record may be applied.
 *
 * The LINBIT codec (linbit/) and the gRPC client and receiver (rpc/client.ts,
 * receiver/record-checks.ts) only map fields to and from bytes, feed the
 * ledger, and say *where* a rule failed (stream byte, record, volume offset);
 * which rule, and what "matches" means, lives here. docs/architecture.md. digest.ts holds the chain's primitive (one
 * canonical record hashed onto the previous value); only this file drives it.
 */
import { dataChecksum, runningChecksum, StreamDigest, CHECKSUM_BYTES, SHA256_BYTES, type RecordChecksum, type RunningChecksum } from './digest.js';
import type { BeginInfo, ChecksumAlgorithm, EndMessage, StreamMessage } from './messages.js';

export { dataChecksum, runningChecksum, CHECKSUM_BYTES, SHA256_BYTES, type RecordChecksum, type RunningChecksum };

/**
 * The per-DATA checksum a sender uses unless told otherwise (`--checksum`):
 * BLAKE3, ~4x less CPU than sha256 for the same 32 bytes (docs/benchmarks.md).
 * Receivers older than BLAKE3 refuse it at the begin; docs/stream-format.md
 * ("Checksum algorithms") says what each transport does then.
 */
export const DEFAULT_CHECKSUM: RecordChecksum = 'blake3';

/**
 * The per-DATA checksum a begin declares, undefined for 'none'. A begin that
 * does not say means sha256: the algorithm of every stream before others
 * could be named (and of the format's golden streams).
 */
export function recordChecksumOf(info: BeginInfo): RecordChecksum | undefined {
  const c = info.checksum ?? 'sha256';
  return c === 'none' ? undefined : c;
}

/** The algorithms a stream may declare, for messages that list them. */
const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = ['blake3', 'sha256', 'none'];

/** True for a checksum algorithm this version knows (anything else: the caller refuses it, naming the field). */
export function isChecksumAlgorithm(v: unknown): v is ChecksumAlgorithm {
  return typeof v === 'string' && (CHECKSUM_ALGORITHMS as readonly string[]).includes(v);
}

/** What the End of a stream counts (DATA and UNMAP records and their bytes). */
export interface StreamCounts {
  dataRecords: number;
  unmapRecords: number;
  dataBytes: number;
  unmapBytes: number;
}

/** Where a resumed transfer stands: the chain value and the counts of everything below the resume offset. */
export interface LedgerState extends StreamCounts {
  digest: Buffer;
}

/**
 * The running totals of one stream, in stream order: counts always, the
 * stream digest chain when the stream has checksums. The one place that
 * advances the digest chain, on both sides and for both transports.
 */
export class StreamLedger {
  private readonly chain: StreamDigest;
  readonly counts: StreamCounts;

  /**
   * checksums: chain the digest (a stream with per-DATA checksums); without,
   * the chain stays at its starting value.
   * resume: continue from a stored state (a resumed transfer); its digest is
   * used only when it is a whole chain value (32 bytes).
   */
  constructor(
    readonly checksums: boolean,
    resume?: Partial<LedgerState>,
  ) {
    const d = resume?.digest;
    this.chain = new StreamDigest(d !== undefined && d.length === SHA256_BYTES ? d : undefined);
    this.counts = {
      dataRecords: resume?.dataRecords ?? 0,
      unmapRecords: resume?.unmapRecords ?? 0,
      dataBytes: resume?.dataBytes ?? 0,
      unmapBytes: resume?.unmapBytes ?? 0,
    };
  }

  /** One DATA record of lengthBytes at offsetBytes; its checksum is required when the stream has checksums. */
  addData(offsetBytes: number, lengthBytes: number, checksum?: Uint8Array): void {
    this.counts.dataRecords++;
    this.counts.dataBytes += lengthBytes;
    if (this.checksums) this.chain.addData(offsetBytes, lengthBytes, checksum as Uint8Array);
  }

  addUnmap(offsetBytes: number, lengthBytes: number): void {
    this.counts.unmapRecords++;
    this.counts.unmapBytes += lengthBytes;
    if (this.checksums) this.chain.addUnmap(offsetBytes, lengthBytes);
  }

  /** The current chain value (a copy; 32 zero bytes before any record, or the resumed value). */
  get digest(): Buffer {
    return this.chain.state;
  }

  /** True when `claimed` is the chain value so far (always false without checksums). */
  digestMatches(claimed: Uint8Array): boolean {
    return this.checksums && this.chain.matches(claimed);
  }

  /** Counts and chain value now (a copy: a checkpoint's mark). */
  snapshot(): LedgerState {
    return { ...this.counts, digest: this.digest };
  }

  /**
   * The first count an End claims that differs from what was counted, or
   * undefined when all agree. Only the fields the End carries are compared.
   */
  endCountMismatch(claimed: Partial<StreamCounts>): { field: keyof StreamCounts; claimed: number; counted: number } | undefined {
    for (const field of ['dataRecords', 'unmapRecords', 'dataBytes', 'unmapBytes'] as const) {
      const c = claimed[field];
      if (c !== undefined && c !== this.counts[field]) return { field, claimed: c, counted: this.counts[field] };
    }
    return undefined;
  }

  /** The end message of what the ledger saw: counts, and the digest when the stream has checksums. */
  seal(): EndMessage {
    const end: EndMessage = { type: 'end', ...this.counts };
    if (this.checksums) end.digest = this.chain.state;
    return end;
  }
}

/** A DATA message with its checksum (computed unless the sender supplied one; a piece of a record gets none). */
export function withDataChecksum(m: StreamMessage, algorithm: RecordChecksum): StreamMessage {
  if (m.type !== 'data' || m.checksum !== undefined || m.piece !== undefined || !(m.data instanceof Uint8Array)) return m;
  return { ...m, checksum: dataChecksum(m.data, algorithm) };
}

/**
 * The checksum (`algorithm`) of a payload (its bytes, or a running checksum
 * over its pieces, made for the same algorithm), and whether it is the
 * sender's `expected` one.
 */
export function checkDataChecksum(payload: Uint8Array | RunningChecksum, expected: Uint8Array, algorithm: RecordChecksum): { actual: Buffer; ok: boolean } {
  const actual = payload instanceof Uint8Array ? dataChecksum(payload, algorithm) : payload.digest();
  return { actual, ok: actual.equals(expected) };
}

const ZERO_CHECKSUMS = new Map<string, Buffer>();
/** The checksum of `lengthBytes` zero bytes (a ZERO-encoded DATA record); cached per algorithm and length: senders use one chunk size. */
function zeroChecksum(lengthBytes: number, algorithm: RecordChecksum): Buffer {
  const key = `${algorithm}:${lengthBytes}`;
  let c = ZERO_CHECKSUMS.get(key);
  if (!c) {
    c = dataChecksum(Buffer.alloc(lengthBytes), algorithm);
    if (ZERO_CHECKSUMS.size > 32) ZERO_CHECKSUMS.clear();
    ZERO_CHECKSUMS.set(key, c);
  }
  return c;
}

/** True when `claimed` is the checksum (`algorithm`) of lengthBytes zero bytes (a ZERO-encoded DATA record's checksum). */
export function zeroChecksumMatches(lengthBytes: number, claimed: Uint8Array, algorithm: RecordChecksum): boolean {
  return zeroChecksum(lengthBytes, algorithm).equals(claimed);
}

/**
 * Bounds: why the record [offsetBytes, +lengthBytes) cannot be applied to a
 * volume of volumeBytes, or undefined when it can: 'offset' (not a byte
 * offset below 2^53), 'length' (not a positive integer), 'beyond' (it ends
 * past the volume, or past 2^53).
 */
export function rangeFault(offsetBytes: number, lengthBytes: number, volumeBytes: number): 'offset' | 'length' | 'beyond' | undefined {
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) return 'offset';
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes <= 0) return 'length';
  if (!Number.isSafeInteger(offsetBytes + lengthBytes) || offsetBytes + lengthBytes > volumeBytes) return 'beyond';
  return undefined;
}

/**
 * Order: records of a full stream (and every gRPC transfer) ascend without
 * overlapping. `endBytes` is where the previous record ended (at first: the
 * resume offset); a record starting below it is out of order.
 */
export class AscendingRecords {
  constructor(public endBytes: number) {}

  /** True when a record starting at offsetBytes may follow the previous one. */
  accepts(offsetBytes: number): boolean {
    return offsetBytes >= this.endBytes;
  }

  /** [offsetBytes, +lengthBytes) was accepted: it is now the previous record. */
  advance(offsetBytes: number, lengthBytes: number): void {
    this.endBytes = offsetBytes + lengthBytes;
  }
}
