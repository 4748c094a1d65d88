/**
 * The transport-neutral messages a sender produces and a receiver consumes, as an
 * AsyncIterable<StreamMessage>. The LINBIT byte codec (linbit/) and the gRPC
 * adapter (rpc/) translate them; tests join sender and receiver directly.
 *
 * Order: exactly one `begin`, then any mix of `data` and `unmap`, then exactly
 * one `end`. Offsets and lengths are bytes on the target volume.
 * See docs/stream-format.md for how each field travels in the LINBIT stream.
 */

export type FormatVersion = '1.0' | '1.1';
export type ChecksumAlgorithm = 'sha256' | 'none';

export interface BeginInfo {
  /**
   * LINBIT pipe mode only: the format of the byte stream. The LINBIT decoder
   * sets it from the magic; the encoder writes this format (default 1.1) unless
   * its options name one (they must agree). gRPC has no such field.
   */
  formatVersion?: FormatVersion;
  /** Size of the source volume. */
  volumeSizeBytes?: number;
  /** Pool block (chunk) size of the source: the unit of every record. */
  blockSizeBytes?: number;
  /** Identity of the snapshot being sent (e.g. LV uuid + transaction). */
  sourceId?: string;
  /** Name of the snapshot being sent, when the sender says it (e.g. "vg0/snap2"): receivers name their received snapshots after it. */
  sourceName?: string;
  /** Identity of the base an incremental stream applies to. */
  baseId?: string;
  /** true: delta against baseId; false: full send. */
  incremental?: boolean;
  /** Identifies one transfer across resumes. */
  transferId?: string;
  /** 'sha256': every DATA carries a checksum and the end carries a stream digest. */
  checksum?: ChecksumAlgorithm;
  /** What the plan says will follow (for progress and space checks). */
  plannedDataBytes?: number;
  plannedUnmapBytes?: number;
}

export interface BeginMessage {
  type: 'begin';
  info: BeginInfo;
}

export interface DataMessage {
  type: 'data';
  offsetBytes: number;
  /**
   * The bytes to write at offsetBytes. From the decoder this may be a subarray
   * of an input chunk: safe to keep with Node streams (they never reuse chunk
   * buffers), but copy it if your input source recycles buffers.
   */
  data: Buffer;
  /**
   * sha256 of the whole DATA record's payload (32 bytes); from the decoder only
   * when the stream carried one and it matched (on a piece: only on the last).
   */
  checksum?: Buffer;
  /**
   * Set when one DATA record arrives as several data messages (the decoder cuts
   * records over DATA_PIECE_BYTES into pieces so they stream through bounded
   * memory): the record's whole range, and whether this piece is its last.
   * Pieces of one record come consecutively, in order, each starting where the
   * previous ended; the first starts at recordOffsetBytes.
   */
  piece?: DataPiece;
}

export interface DataPiece {
  recordOffsetBytes: number;
  recordLengthBytes: number;
  last: boolean;
}

export interface UnmapMessage {
  type: 'unmap';
  offsetBytes: number;
  lengthBytes: number;
}

export interface EndMessage {
  type: 'end';
  /**
   * LINBIT pipe mode only (END_STREAM's n_chunks): every record of the byte
   * stream, BEGIN, END and optional records included. The LINBIT decoder reports
   * the verified count (for a 1.0 stream, which has no BEGIN/END, the number of
   * records seen); the encoder ignores it and writes the count of what it wrote.
   */
  records?: number;
  /** DATA records (n_data). The encoder checks it against the data messages it saw. */
  dataRecords: number;
  /** UNMAP records (n_unmap). The encoder checks it against the unmap messages it saw. */
  unmapRecords: number;
  /** Sum of DATA payload lengths (decoder: counted). */
  dataBytes?: number;
  /** Sum of UNMAP lengths (decoder: counted). */
  unmapBytes?: number;
  /** Optional records of unknown kind that were skipped (decoder; counted in `records`). */
  skippedRecords?: number;
  /**
   * Final stream digest (digest.ts). Decoder: present when the stream carried one
   * and it matched. Encoder: if given, must equal the digest it computed.
   */
  digest?: Buffer;
}

export type StreamMessage = BeginMessage | DataMessage | UnmapMessage | EndMessage;
