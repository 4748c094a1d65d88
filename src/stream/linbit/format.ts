/**
 * The LINBIT thin_send/thin_recv byte format (1.0 and 1.1) and thinship's
 * optional records in it: record layout, magics, commands, sizes, exactly as
 * docs/stream-format.md describes them. encode.ts writes it, decode.ts reads
 * it; the stream's rules (checksums, digest, counts) live in
 * stream/integrity.ts.
 */
import { CHECKSUM_BYTES, SHA256_BYTES, type RecordChecksum } from '../digest.js';
import type { BeginInfo, DataMessage, EndMessage, UnmapMessage } from '../messages.js';

export type FormatVersion = '1.0' | '1.1';

/**
 * What the LINBIT byte format says beyond the transport-neutral messages
 * (stream/messages.ts): its format version, and END_STREAM's count of every
 * record. The decoder yields these; the encoder takes them (a StreamMessage is
 * one, its LINBIT fields absent). Nothing outside linbit/ reads them but the
 * pipe-mode commands and tests.
 */
export interface LinbitBeginInfo extends BeginInfo {
  /**
   * The format of the byte stream. The decoder sets it from the magic; the
   * encoder writes this format (default 1.1) unless its options name one (they
   * must agree).
   */
  formatVersion?: FormatVersion;
}

export interface LinbitBeginMessage {
  type: 'begin';
  info: LinbitBeginInfo;
}

export interface LinbitEndMessage extends EndMessage {
  /**
   * END_STREAM's n_chunks: every record of the byte stream, BEGIN, END and
   * optional records included. The decoder reports the verified count (for a 1.0
   * stream, which has no BEGIN/END, the number of records seen); the encoder
   * ignores it and writes the count of what it wrote.
   */
  records?: number;
  /** Optional records of unknown kind that were skipped (decoder; counted in `records`). */
  skippedRecords?: number;
}

export type LinbitMessage = LinbitBeginMessage | DataMessage | UnmapMessage | LinbitEndMessage;

export const HEADER_BYTES = 28;
/** END_STREAM payload: n_chunks, n_data, n_unmap (u64 BE each). */
export const END_PAYLOAD_BYTES = 24;

export const MAGIC_1_1 = 0x24c4f02aae2e4fa9n;
export const MAGIC_1_0 = 0xca7f00d5de7ec7edn;
/** Pre-1.0 format (24-byte header); rejected like thin_recv does. */
export const MAGIC_PREVIOUS = 0xe85bc5636cc72a05n;

export const CMD_DATA = 0;
export const CMD_UNMAP = 1;
export const CMD_BEGIN_STREAM = 2;
export const CMD_END_STREAM = 3;
/** Bit 31: an optional record, skipped by receivers that do not know it. */
export const CMD_OPTIONAL_BIT = 0x8000_0000;

/** thinship's optional records: 0x80000000 | 'T' 'S' nn (see docs/stream-format.md). */
export const CMD_OPT_BEGIN_INFO = 0x8054_5301;
export const CMD_OPT_DATA_CHECKSUM = 0x8054_5302;
export const CMD_OPT_STREAM_DIGEST = 0x8054_5303;
export const CMD_OPT_DATA_CHECKSUM_GROUP = 0x8054_5304;

/**
 * The algorithm byte of the checksum, group and digest records: 1 = sha256,
 * 2 = BLAKE3 (per-DATA checksums only: the stream digest is always the sha256
 * chain, algorithm 1). Both are 32 bytes.
 */
export const CHECKSUM_ALGO_SHA256 = 1;
const CHECKSUM_ALGO_BLAKE3 = 2;
/** The algorithm byte of a per-DATA checksum algorithm. */
export const CHECKSUM_ALGO_BYTE: Readonly<Record<RecordChecksum, number>> = { sha256: CHECKSUM_ALGO_SHA256, blake3: CHECKSUM_ALGO_BLAKE3 };
/** Payload of a DATA checksum record (algorithm u8 + 32-byte checksum) and of the stream digest record (1 + 32-byte sha256 chain value). */
export const CHECKSUM_RECORD_BYTES = 1 + CHECKSUM_BYTES;
export const DIGEST_RECORD_BYTES = 1 + SHA256_BYTES;
/**
 * begin-info "v": 1 = with checksum sha256, one DATA checksum record after each
 * DATA (what thinship wrote before checksum groups; still decoded); 2 = with
 * checksum sha256 or blake3, DATA checksum groups before the DATA records they
 * cover. The encoder writes 2 when it writes groups, else 1.
 */
export const BEGIN_INFO_VERSION_RECORDS = 1;
export const BEGIN_INFO_VERSION_GROUPS = 2;
export const BEGIN_INFO_MAX_BYTES = 64 * 1024;
/**
 * begin-info's JSON keys besides "v" (docs/stream-format.md §3), each the begin
 * field of the same name, in the order the encoder writes them.
 */
export const BEGIN_INFO_KEYS = [
  'volumeSizeBytes',
  'blockSizeBytes',
  'sourceId',
  'sourceName',
  'baseId',
  'incremental',
  'transferId',
  'checksum',
  'plannedDataBytes',
  'plannedUnmapBytes',
] as const satisfies readonly (keyof BeginInfo)[];

/** One entry of a checksum group: offset u64, length u64, the 32-byte checksum. */
export const GROUP_ENTRY_BYTES = 8 + 8 + CHECKSUM_BYTES;
/** A group lists at most this many DATA records (payload ≤ 1 + 48 KiB)... */
export const GROUP_MAX_RECORDS = 1024;
/** ...covering at most this many payload bytes, unless one record alone is bigger (the most an encoder may hold back; ours holds GROUP_ENCODER_DATA_BYTES). */
export const GROUP_MAX_DATA_BYTES = 32 * 1024 * 1024;
/**
 * What the encoder puts in one group (it holds the group's records until it is
 * complete): less than the maximum, so a pipe sender holds less (its peak RSS
 * was 211 MiB with 32 MiB groups and 32 MiB pulled ahead; docs/benchmarks.md).
 */
export const GROUP_ENCODER_DATA_BYTES = 8 * 1024 * 1024;
/** Messages the encoder pulls ahead while it writes a group (payload bytes, plus MESSAGE_OVERHEAD_BYTES each). */
export const GROUP_PREFETCH_BYTES = 8 * 1024 * 1024; // one group: the next is read and hashed while one is written

/**
 * DATA records longer than this are decoded as consecutive pieces of this size
 * (data messages with `piece` set), so a record of any length streams through
 * bounded memory; shorter ones arrive whole, and with a checksum, verified
 * before they are delivered.
 */
export const DATA_PIECE_BYTES = 4 * 1024 * 1024;

export const TWO_POW_32 = 0x1_0000_0000;
export const MAGIC_BYTES: Record<FormatVersion, Buffer> = {
  '1.0': u64Buffer(MAGIC_1_0),
  '1.1': u64Buffer(MAGIC_1_1),
};

function u64Buffer(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
}

export function hex(v: bigint | number): string {
  return '0x' + v.toString(16).toUpperCase();
}

export function cmdName(cmd: number): string {
  switch (cmd) {
    case CMD_DATA:
      return 'DATA';
    case CMD_UNMAP:
      return 'UNMAP';
    case CMD_BEGIN_STREAM:
      return 'BEGIN_STREAM';
    case CMD_END_STREAM:
      return 'END_STREAM';
    case CMD_OPT_BEGIN_INFO:
      return 'begin-info';
    case CMD_OPT_DATA_CHECKSUM:
      return 'DATA checksum';
    case CMD_OPT_STREAM_DIGEST:
      return 'stream digest';
    case CMD_OPT_DATA_CHECKSUM_GROUP:
      return 'DATA checksum group';
    default:
      return (cmd & CMD_OPTIONAL_BIT) !== 0 ? `optional ${hex(cmd)}` : `command ${cmd}`;
  }
}

/** Iterates sync and async sources alike. */
export function toAsyncIterator<T>(input: AsyncIterable<T> | Iterable<T>): AsyncIterator<T> {
  if (Symbol.asyncIterator in input) return input[Symbol.asyncIterator]();
  const it = input[Symbol.iterator]();
  return {
    next: async () => it.next(),
    return: async (v?: unknown) => it.return?.(v) ?? { done: true, value: v },
  };
}
