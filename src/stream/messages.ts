/**
 * The transport-neutral messages a sender produces and a receiver consumes, as an
 * AsyncIterable<StreamMessage>. The LINBIT byte codec (linbit/) and the gRPC
 * adapter (rpc/) translate them; tests join sender and receiver directly.
 * Nothing here belongs to one transport: what only the LINBIT byte format has
 * (its format version, END_STREAM's n_chunks, skipped optional records) is in
 * linbit/format.ts (LinbitMessage), what only a gRPC call has (target, resume
 * offset, compression) in receiver/record-checks.ts (TransferBegin).
 *
 * Order: exactly one `begin`, then any mix of `data` and `unmap`, then exactly
 * one `end`. Offsets and lengths are bytes on the target volume.
 * See docs/stream-format.md for how each field travels in the LINBIT stream,
 * proto/thinship/v1/receiver.proto for the gRPC Begin and End.
 */

/** The per-DATA checksum of a stream ('none': no checksums and no stream digest). */
export type ChecksumAlgorithm = 'sha256' | 'blake3' | 'none';

/**
 * The begin of a stream: the one begin type of both transports. Every field is
 * optional because a plain LINBIT stream says none of them; a gRPC Begin always
 * carries them all (rpc/server.ts maps it; '' and 0 there mean "not given").
 */
export interface BeginInfo {
  /** Size of the source volume. */
  volumeSizeBytes?: number;
  /** Pool block (chunk) size of the source: the unit of every record. Absent: not said. */
  blockSizeBytes?: number;
  /** Identity of the snapshot being sent (e.g. LV uuid + transaction). */
  sourceId?: string;
  /** Name of the snapshot being sent, when the sender says it (e.g. "vg0/snap2"): receivers name their received snapshots after it. */
  sourceName?: string;
  /** Identity of the base an incremental stream applies to (absent for a full stream). */
  baseId?: string;
  /** true: delta against baseId; false: full send. */
  incremental?: boolean;
  /** Identifies one transfer across resumes. */
  transferId?: string;
  /** 'sha256' or 'blake3': every DATA carries that checksum and the end carries a stream digest (a sha256 chain either way). */
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
   * The checksum (the begin's algorithm) of the whole DATA record's payload (32 bytes); from the decoder only
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
  /** DATA records (n_data). The encoder checks it against the data messages it saw. */
  dataRecords: number;
  /** UNMAP records (n_unmap). The encoder checks it against the unmap messages it saw. */
  unmapRecords: number;
  /** Sum of DATA payload lengths (decoder: counted). */
  dataBytes?: number;
  /** Sum of UNMAP lengths (decoder: counted). */
  unmapBytes?: number;
  /**
   * Final stream digest (digest.ts). Decoder: present when the stream carried one
   * and it matched. Encoder: if given, must equal the digest it computed.
   */
  digest?: Buffer;
}

export type StreamMessage = BeginMessage | DataMessage | UnmapMessage | EndMessage;
