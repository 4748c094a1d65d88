/**
 * What a gRPC transfer's begin and records must satisfy, checked before
 * anything touches a device. rpc/server.ts maps ApplyStream requests to the
 * TransferBegin (the transport-neutral BeginInfo and the call's own terms) and
 * WireRecord values below; transfers.ts (the registry) runs
 * them through checkRecord and finishRecord in stream order and applies the
 * resulting StreamMessages.
 *
 * The rules themselves are the integrity core's (stream/integrity.ts):
 * bounds (rangeFault), order (AscendingRecords), counts and the digest chain
 * (StreamLedger), a ZERO record's checksum (zeroChecksum); a payload's
 * checksum is compared in decode-data.ts (checkDataChecksum). This file maps
 * each wire field to them and names the field that failed.
 */
import { ThinshipError } from '../errors.js';
import { AscendingRecords, StreamLedger, rangeFault, zeroChecksumMatches, CHECKSUM_BYTES, type LedgerState } from '../stream/integrity.js';
import { checkData, type DataCheck, type DataChecked } from './decode-data.js';
import type { ChunkDecompressor } from '../stream/zstd.js';
import type { BeginInfo, StreamMessage } from '../stream/messages.js';
import { checkTransferId, MAX_ID_FIELD_BYTES, MAX_TARGET_BYTES, type LastDataRecord, type TransferMode } from './checkpoint.js';

/** Largest volume a Begin may announce unless configured otherwise (1 PiB). */
export const DEFAULT_MAX_VOLUME_BYTES = 2 ** 50;
/** dm-thin's data block size: a multiple of 64 KiB from 64 KiB to 1 GiB. 0: not said (the field is informative). */
const MIN_BLOCK_BYTES = 64 * 1024;
const MAX_BLOCK_BYTES = 1024 * 1024 * 1024;

/** The begin fields a gRPC Begin always carries (proto3: every field is there, '' / 0 meaning "not given" only for baseId / blockSizeBytes). */
type CarriedByGrpc = 'transferId' | 'volumeSizeBytes' | 'sourceId' | 'incremental' | 'checksum' | 'plannedDataBytes' | 'plannedUnmapBytes';

/**
 * A gRPC transfer's begin as the receiver takes it: the stream's begin (the one
 * transport-neutral BeginInfo, rpc/server.ts maps the proto Begin into it) and
 * what this call asks of the receiver. checkBegin checks it; applyMessages gets
 * it as the begin message's info as it is.
 */
export type TransferBegin = Omit<BeginInfo, CarriedByGrpc> &
  Required<Pick<BeginInfo, CarriedByGrpc>> & {
    /** Where to apply it (a path or an LV the access policy allows). */
    target: string;
    /** The durable offset the sender resumes from (GetTransferState); 0 for a new transfer. */
    resumeOffsetBytes: number;
    /** How DATA payloads may travel: zstd frames allowed, or raw only. */
    compression: 'none' | 'zstd';
    /** Apply over a diverged target / onto a target without a record (target-state/rules.ts). */
    force?: boolean;
    /** Extend an existing file target smaller than the volume. */
    grow?: boolean;
  };

/** The checkpoint's word for a begin's kind. */
export function modeOf(b: Pick<BeginInfo, 'incremental'>): TransferMode {
  return b.incremental === true ? 'incremental' : 'full';
}

export type WireRecord =
  /** detachable: the payload's ArrayBuffer is this message's alone (a decode worker may take it over). */
  | { type: 'data'; offsetBytes: number; lengthBytes: number; payload: Buffer; encoding: 'raw' | 'zstd' | 'zero'; checksum: Buffer; detachable?: boolean }
  | { type: 'unmap'; offsetBytes: number; lengthBytes: number }
  | { type: 'end'; records: number; dataRecords: number; unmapRecords: number; dataBytes: number; unmapBytes: number; digest: Buffer }
  /** Anything else the transport saw where a record should be (a second begin, an empty message). */
  | { type: 'invalid'; what: string };

/** Running totals after a record: what a checkpoint at that record records. */
export interface Mark extends LedgerState {
  offsetBytes: number;
  /** The last DATA record at or below offsetBytes (re-verified on the target before a resume). */
  lastData?: LastDataRecord;
}

/** Everything the record decoder needs to know and keeps track of, advanced in stream order. */
export interface DecodeContext {
  begin: TransferBegin;
  maxChunkBytes: number;
  /** Records ascend without overlapping, from the resume offset (advanced by checkRecord). */
  order: AscendingRecords;
  /**
   * Counts and the stream digest chain (advanced by checkRecord; a DATA enters
   * with its sender's checksum, which finishRecord verifies before the record
   * is handed on).
   */
  ledger: StreamLedger;
  ended: boolean;
  /** The last DATA record finished (advanced by finishRecord, in order). */
  lastData?: LastDataRecord;
}

/** A context for a transfer starting at `resume` (its checkpoint), or at the start. */
export function newDecodeContext(begin: TransferBegin, maxChunkBytes: number, resume?: Mark): DecodeContext {
  return {
    begin,
    maxChunkBytes,
    order: new AscendingRecords(resume?.offsetBytes ?? begin.resumeOffsetBytes),
    ledger: new StreamLedger(begin.checksum !== 'none', resume),
    ended: false,
    lastData: resume?.lastData,
  };
}

export interface DecodedRecord {
  msg: StreamMessage;
  mark: Mark;
}

/** Decompresses and checksums a DATA payload: on the main thread (checkData) or on a decode worker. */
export type DataChecker = (c: DataCheck) => Promise<DataChecked> | DataChecked;

/** A record that passed the cheap checks; its payload's decompression and checksum may still be running. */
export interface CheckedRecord {
  kind: 'data' | 'zero' | 'unmap' | 'end';
  offsetBytes: number;
  lengthBytes: number;
  work?: Promise<DataChecked> | DataChecked;
  end?: Extract<WireRecord, { type: 'end' }>;
  /** The end's digest is the receiver's chain value (decided in order by checkRecord, reported by finishRecord). */
  endDigestMatches?: boolean;
  /** Where the previous record now ends. */
  cursorBytes: number;
  /** Counts and digest after this record. */
  after: LedgerState;
}

function recordError(code: 'BAD_STREAM' | 'CHECKSUM_MISMATCH', kind: string, offsetBytes: number, why: string): ThinshipError {
  return new ThinshipError(code, `${kind} record at volume offset ${offsetBytes}: ${why}`, { details: { volumeOffset: offsetBytes } });
}

/**
 * The cheap checks of one wire record, in stream order: structure, offset
 * and length inside the volume, ascending order, length limit, encoding and
 * payload size, the end's counts. Starts the payload's decompression and
 * checksum (`checker`) without waiting for it. Nothing here touches a device.
 */
export function checkRecord(r: WireRecord, ctx: DecodeContext, checker: DataChecker): CheckedRecord {
  const b = ctx.begin;
  const cursor = ctx.order.endBytes;
  if (r.type === 'invalid') throw new ThinshipError('BAD_STREAM', `after volume offset ${cursor}: ${r.what}`, { details: { volumeOffset: cursor } });
  if (ctx.ended) throw new ThinshipError('BAD_STREAM', `a ${r.type} record follows the end of the stream`, { details: { volumeOffset: cursor } });
  if (r.type === 'end') {
    const c = ctx.ledger.counts;
    // The proto's `records` counts begin and end as well.
    const records = c.dataRecords + c.unmapRecords + 2;
    const bad: { field: string; claimed: number; counted: number } | undefined =
      r.records !== records ? { field: 'records', claimed: r.records, counted: records } : ctx.ledger.endCountMismatch(r);
    if (bad !== undefined)
      throw new ThinshipError('BAD_STREAM', `end record: the sender counts ${bad.claimed} ${bad.field} for the whole transfer, the receiver ${bad.counted}`, {
        details: { volumeOffset: cursor },
      });
    if (b.checksum === 'none' && r.digest.length !== 0) throw new ThinshipError('BAD_STREAM', 'end record carries a digest but the transfer has no checksums');
    ctx.ended = true;
    return {
      kind: 'end',
      offsetBytes: cursor,
      lengthBytes: 0,
      end: r,
      endDigestMatches: ctx.ledger.digestMatches(r.digest),
      cursorBytes: cursor,
      after: ctx.ledger.snapshot(),
    };
  }
  const kind = r.type;
  const off = r.offsetBytes;
  const len = r.lengthBytes;
  switch (rangeFault(off, len, b.volumeSizeBytes)) {
    case 'offset':
      throw recordError('BAD_STREAM', kind, off, 'not a byte offset (a non-negative integer below 2^53)');
    case 'length':
      throw recordError('BAD_STREAM', kind, off, `length ${len} must be a positive integer`);
    case 'beyond':
      throw recordError('BAD_STREAM', kind, off, `length ${len} goes beyond the end of the volume (${b.volumeSizeBytes} bytes)`);
    default:
      break;
  }
  if (!ctx.order.accepts(off)) {
    throw recordError(
      'BAD_STREAM',
      kind,
      off,
      off < b.resumeOffsetBytes
        ? `below the resume offset ${b.resumeOffsetBytes}`
        : `out of order: records must ascend without overlapping, and the previous one ends at ${cursor}`,
    );
  }
  let rec: Omit<CheckedRecord, 'after' | 'cursorBytes'>;
  if (r.type === 'unmap') {
    ctx.ledger.addUnmap(off, len);
    rec = { kind: 'unmap', offsetBytes: off, lengthBytes: len };
  } else {
    if (len > ctx.maxChunkBytes)
      throw recordError('BAD_STREAM', 'data', off, `length ${len} is more than this receiver's limit of ${ctx.maxChunkBytes} bytes per record`);
    if (b.checksum !== 'none' && r.checksum.length !== CHECKSUM_BYTES)
      throw recordError('BAD_STREAM', 'data', off, `checksum must be ${CHECKSUM_BYTES} bytes (${b.checksum}), got ${r.checksum.length}`);
    if (b.checksum === 'none' && r.checksum.length !== 0) throw recordError('BAD_STREAM', 'data', off, 'carries a checksum but the transfer has none');
    if (r.encoding === 'zero') {
      if (r.payload.length !== 0) throw recordError('BAD_STREAM', 'data', off, `encoding ZERO with a ${r.payload.length}-byte payload (must be empty)`);
      if (b.checksum !== 'none' && !zeroChecksumMatches(len, r.checksum, b.checksum))
        throw recordError('CHECKSUM_MISMATCH', 'data', off, `checksum mismatch over ${len} zero bytes; not written (${b.checksum})`);
      ctx.ledger.addData(off, len, r.checksum);
      rec = { kind: 'zero', offsetBytes: off, lengthBytes: len };
    } else {
      if (r.encoding === 'raw' && r.payload.length !== len)
        throw recordError('BAD_STREAM', 'data', off, `raw payload of ${r.payload.length} bytes, the record says ${len}`);
      if (r.encoding === 'zstd' && b.compression !== 'zstd')
        throw recordError('BAD_STREAM', 'data', off, 'zstd payload in a transfer that announced no compression');
      // A copy: a decode worker may take over the message's memory, checksum included (detachable).
      const sum = Buffer.from(r.checksum);
      const work = checker({
        offsetBytes: off,
        lengthBytes: len,
        payload: r.payload,
        encoding: r.encoding,
        checksum: b.checksum === 'none' ? undefined : { algorithm: b.checksum, expected: r.checksum },
        detachable: r.detachable,
      });
      if (work instanceof Promise) work.catch(() => undefined); // awaited in order by finishRecord
      ctx.ledger.addData(off, len, sum);
      rec = { kind: 'data', offsetBytes: off, lengthBytes: len, work };
    }
  }
  ctx.order.advance(off, len);
  return { ...rec, cursorBytes: off + len, after: ctx.ledger.snapshot() };
}

/** In stream order: the payload's result, the end's digest; the message to apply and the mark after it. */
function finishWith(c: CheckedRecord, ctx: DecodeContext, done: DataChecked | undefined): DecodedRecord {
  const checksums = ctx.begin.checksum !== 'none';
  let msg: StreamMessage;
  const { digest, ...counts } = c.after;
  if (c.kind === 'end') {
    const e = c.end!;
    if (checksums && !c.endDigestMatches) {
      throw new ThinshipError(
        'CHECKSUM_MISMATCH',
        `end record: stream digest mismatch (sender ${e.digest.toString('hex') || 'none'}, receiver ${digest.toString('hex')})`,
        { details: { volumeOffset: c.offsetBytes } },
      );
    }
    msg = { type: 'end', ...counts, digest };
  } else if (c.kind === 'unmap') {
    msg = { type: 'unmap', offsetBytes: c.offsetBytes, lengthBytes: c.lengthBytes };
  } else if (c.kind === 'zero') {
    // All-zero chunks are made to read as zeros (discard / hole) rather than written.
    msg = { type: 'unmap', offsetBytes: c.offsetBytes, lengthBytes: c.lengthBytes };
  } else {
    // checkData compared the payload with the sender's checksum (the one the ledger chained), or threw.
    if (checksums) ctx.lastData = { offsetBytes: c.offsetBytes, lengthBytes: c.lengthBytes, checksum: done!.sum!.toString('hex') };
    msg = { type: 'data', offsetBytes: c.offsetBytes, data: done!.data };
  }
  return { msg, mark: { offsetBytes: c.cursorBytes, lastData: ctx.lastData, ...c.after } };
}

export async function finishRecord(c: CheckedRecord, ctx: DecodeContext): Promise<DecodedRecord> {
  return finishWith(c, ctx, c.work === undefined ? undefined : await c.work);
}

/** Checks and finishes one record on the calling thread (unit tests, and receivers without decode workers). */
export function decodeRecord(r: WireRecord, ctx: DecodeContext, dz: ChunkDecompressor): DecodedRecord {
  const c = checkRecord(r, ctx, (j) => checkData(j, dz));
  return finishWith(c, ctx, c.work as DataChecked | undefined);
}

/**
 * Checks every field of a Begin that does not depend on the receiver's
 * state, before anything is opened or stored: nothing a Begin carries may
 * make a checkpoint the receiver cannot load again, or make state grow.
 * Each refusal names the field (protobuf name).
 */
export function checkBegin(b: TransferBegin, o: { requireChecksum: boolean; maxVolumeBytes?: number }): void {
  checkTransferId(b.transferId);
  const bad = (why: string) => new ThinshipError('BAD_STREAM', `begin of transfer ${b.transferId}: ${why}`);
  const maxVolume = o.maxVolumeBytes ?? DEFAULT_MAX_VOLUME_BYTES;
  const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
  if (b.target === '' || bytes(b.target) > MAX_TARGET_BYTES) throw bad(`target must be 1 to ${MAX_TARGET_BYTES} bytes, got ${bytes(b.target)}`);
  const baseId = b.baseId ?? '';
  if (bytes(b.sourceId) > MAX_ID_FIELD_BYTES) throw bad(`source_id is ${bytes(b.sourceId)} bytes, more than ${MAX_ID_FIELD_BYTES}`);
  if (bytes(baseId) > MAX_ID_FIELD_BYTES) throw bad(`base_id is ${bytes(baseId)} bytes, more than ${MAX_ID_FIELD_BYTES}`);
  if (bytes(b.sourceName ?? '') > MAX_ID_FIELD_BYTES) throw bad(`source_name is ${bytes(b.sourceName ?? '')} bytes, more than ${MAX_ID_FIELD_BYTES}`);
  if (!Number.isSafeInteger(b.volumeSizeBytes) || b.volumeSizeBytes <= 0) throw bad(`volume_size_bytes ${b.volumeSizeBytes} must be positive`);
  if (b.volumeSizeBytes > maxVolume) throw bad(`volume_size_bytes ${b.volumeSizeBytes} is more than this receiver's maxVolumeBytes ${maxVolume}`);
  const bs = b.blockSizeBytes ?? 0;
  if (!Number.isSafeInteger(bs) || (bs !== 0 && (bs < MIN_BLOCK_BYTES || bs > MAX_BLOCK_BYTES || bs % MIN_BLOCK_BYTES !== 0))) {
    throw bad(
      `block_size_bytes ${bs} must be 0 (not given) or a dm-thin block size: a multiple of ${MIN_BLOCK_BYTES} from ${MIN_BLOCK_BYTES} to ${MAX_BLOCK_BYTES}`,
    );
  }
  for (const [f, v] of [
    ['planned_data_bytes', b.plannedDataBytes],
    ['planned_unmap_bytes', b.plannedUnmapBytes],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0 || v > b.volumeSizeBytes) throw bad(`${f} ${v} must be 0 to volume_size_bytes (${b.volumeSizeBytes})`);
  }
  if (b.plannedDataBytes + b.plannedUnmapBytes > b.volumeSizeBytes)
    throw bad(`planned_data_bytes + planned_unmap_bytes (${b.plannedDataBytes + b.plannedUnmapBytes}) is more than volume_size_bytes (${b.volumeSizeBytes})`);
  if (!Number.isSafeInteger(b.resumeOffsetBytes) || b.resumeOffsetBytes < 0 || b.resumeOffsetBytes > b.volumeSizeBytes)
    throw bad(`resume_offset_bytes ${b.resumeOffsetBytes} is outside the volume`);
  if (b.sourceId === '') throw bad('source_id is empty');
  if (b.incremental && baseId === '') throw bad('an incremental transfer needs base_id');
  if (!b.incremental && baseId !== '') throw bad('a full transfer must not name a base');
  if (b.checksum === 'none' && o.requireChecksum) throw bad('this receiver requires checksums (CHECKSUM_ALGORITHM_BLAKE3 or CHECKSUM_ALGORITHM_SHA256)');
}
