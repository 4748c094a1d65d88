/**
 * The receiver's transfers: validation of every record before it touches a
 * device, durable checkpoints, resume, one transfer per target, abort and
 * expiry. Transport-neutral: rpc/server.ts turns gRPC messages into the
 * TransferBegin / WireRecord values below and errors into gRPC statuses.
 *
 * Applying reuses receiver.ts's applyMessages: records are validated,
 * decompressed and checksummed here (a few records ahead, so that work
 * overlaps the device writes), then handed over as StreamMessages. When
 * applyMessages asks for the next message, the previous one has been
 * written; that is where checkpoints are taken:
 *
 *   write ... write | flush target | save checkpoint (atomic) | write ...
 *
 * every `checkpointIntervalBytes` of data, at the end, and when a stream
 * breaks (at the last applied record, if the flush succeeds). A receiver
 * killed outright loses at most one interval: the next call resumes from the
 * last checkpoint.
 */
import { ThinshipError, asThinshipError } from '../errors.js';
import type { VolumeHandle } from '../device/volume.js';
import { applyMessages } from './receiver.js';
import { currentTargetIdentity, openTransferTarget } from './target.js';
import { StreamDigest, dataChecksum, SHA256_BYTES } from '../stream/digest.js';
import { checkData, type DataCheck, type DataChecked } from './decode-data.js';
import { DecodePool } from './decode-pool.js';
import { defaultWorkerCount } from '../stream/worker-pool.js';
import { ChunkDecompressor } from '../stream/zstd.js';
import type { StreamMessage } from '../stream/messages.js';
import { CheckpointStore, checkTransferId, MAX_ID_FIELD_BYTES, MAX_TARGET_BYTES, type LastDataRecord, type TransferCheckpoint, type TransferMode } from './checkpoint.js';
import { StateDirLock } from './state-lock.js';
import { BufferBudget } from './buffer-budget.js';
import { PipelineState, type PipelineSnapshot } from './pipeline-state.js';
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { authorizeTarget, ownerName, type AccessPolicy, type AllowedTarget, type ClientIdentity } from './access.js';
import type { Logger } from 'pino';

/** Largest uncompressed DATA record accepted unless configured otherwise. */
export const DEFAULT_MAX_CHUNK_BYTES = 4 * 1024 * 1024;
export const DEFAULT_CHECKPOINT_INTERVAL_BYTES = 64 * 1024 * 1024;
/** Also checkpoint after this many records (a stream of many tiny records). */
export const CHECKPOINT_INTERVAL_RECORDS = 16384;
export const DEFAULT_TRANSFER_EXPIRY_MS = 24 * 3600 * 1000;
/** Records validated and decompressed ahead of the one being written. */
export const DECODE_AHEAD_RECORDS = 4;
/** Largest volume a Begin may announce unless configured otherwise (1 PiB). */
export const DEFAULT_MAX_VOLUME_BYTES = 2 ** 50;
/** A call that sends no message for this long ends (retryable) and is checkpointed. */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** A call that sends less than this many bytes per second of waiting, over PROGRESS_WINDOW, ends likewise. */
export const DEFAULT_MIN_BYTES_PER_SECOND = 16 * 1024;
export const DEFAULT_PROGRESS_WINDOW_MS = 60_000;
/** Unfinished (in_progress) transfers one identity may keep stored. */
export const DEFAULT_MAX_STORED_TRANSFERS_PER_IDENTITY = 64;
export const DEFAULT_MAX_ACTIVE_TRANSFERS = 16;
/**
 * Completed transfers remembered per identity (for "already complete" and the
 * base check), beyond which the oldest are forgotten: a re-run of a forgotten
 * one sends again, an incremental onto its target is taken on trust.
 */
export const DEFAULT_MAX_COMPLETED_TRANSFERS_PER_IDENTITY = 1024;
/** Per identity: half the receiver's slots (rounded up), so one identity cannot take them all. */
export function defaultMaxActivePerIdentity(maxActiveTransfers: number): number {
  return Math.max(1, Math.ceil(maxActiveTransfers / 2));
}
/** dm-thin's data block size: a multiple of 64 KiB from 64 KiB to 1 GiB. 0: not said (the field is informative). */
export const MIN_BLOCK_BYTES = 64 * 1024;
export const MAX_BLOCK_BYTES = 1024 * 1024 * 1024;
/** Memory all running transfers may hold at once (see maxBufferedBytes). */
export const DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024;
/** Bytes a message may carry beyond its uncompressed chunk: a zstd frame's worst case and the other fields. */
export const MESSAGE_OVERHEAD_BYTES = 64 * 1024;
/** What a message costs besides its payload, for the progress rate (a flood of empty records is no progress). */
const MESSAGE_COST_BYTES = 64;

export interface TransferBegin {
  transferId: string;
  target: string;
  mode: TransferMode;
  volumeSizeBytes: number;
  blockSizeBytes: number;
  sourceId: string;
  baseId: string;
  plannedDataBytes: number;
  plannedUnmapBytes: number;
  resumeOffsetBytes: number;
  compression: 'none' | 'zstd';
  checksum: 'sha256' | 'none';
}

export type WireRecord =
  /** detachable: the payload's ArrayBuffer is this message's alone (a decode worker may take it over). */
  | { type: 'data'; offsetBytes: number; lengthBytes: number; payload: Buffer; encoding: 'raw' | 'zstd' | 'zero'; checksum: Buffer; detachable?: boolean }
  | { type: 'unmap'; offsetBytes: number; lengthBytes: number }
  | { type: 'end'; records: number; dataRecords: number; unmapRecords: number; dataBytes: number; unmapBytes: number; digest: Buffer }
  /** Anything else the transport saw where a record should be (a second begin, an empty message). */
  | { type: 'invalid'; what: string };

export interface TransferStateView extends TransferCheckpoint {
  active: boolean;
  expiresUnixMs: number;
}

export interface ApplyResult {
  transferId: string;
  dataRecordsApplied: number;
  unmapRecordsApplied: number;
  bytesWritten: number;
  bytesDiscarded: number;
  digest: Buffer;
  state: TransferStateView;
}

export interface TransferRegistryOptions {
  stateDir: string;
  policy: AccessPolicy;
  log: Logger;
  checkpointIntervalBytes?: number;
  maxChunkBytes?: number;
  expiryMs?: number;
  /** Refuse streams without checksums (default true). */
  requireChecksum?: boolean;
  maxActiveTransfers?: number;
  /** Running transfers per client identity (default: half of maxActiveTransfers, rounded up). */
  maxActiveTransfersPerIdentity?: number;
  /** Unfinished (in_progress) transfers stored per client identity; a new one beyond is refused. */
  maxStoredTransfersPerIdentity?: number;
  /** Completed transfers remembered per identity; the oldest beyond are forgotten. */
  maxCompletedTransfersPerIdentity?: number;
  /** Largest volume_size_bytes a Begin may announce. */
  maxVolumeBytes?: number;
  /** No message from the sender for this long ends the call (retryable) after a checkpoint. */
  idleTimeoutMs?: number;
  /** Less than this rate of bytes received, over progressWindowMs of waiting on the sender, ends the call likewise (0: off). */
  minBytesPerSecond?: number;
  progressWindowMs?: number;
  /**
   * Memory all running transfers may hold at once: half for records received
   * and being decoded or written (a shared budget, first come first served),
   * half for what the network holds per transfer (the server sizes HTTP/2
   * stream windows from windowShareBytes).
   */
  maxBufferedBytes?: number;
  /** Called whenever the number of running transfers changes (the server rescales its windows). */
  onActiveChange?: (active: number) => void;
  /** Worker threads that decompress and checksum DATA (default 2; 0: on the main thread). */
  decodeWorkers?: number;
}

/** Running totals after a record: what a checkpoint at that record records. */
interface Mark {
  offsetBytes: number;
  /** The last DATA record at or below offsetBytes (re-verified on the target before a resume). */
  lastData?: LastDataRecord;
  digest: Buffer;
  dataRecords: number;
  unmapRecords: number;
  dataBytes: number;
  unmapBytes: number;
}

interface Session {
  /** Registry key: identity and transfer id (ids are scoped by identity). */
  key: string;
  transferId: string;
  targetKey: string;
  identity: string;
  controller: AbortController;
  /** Set by AbortTransfer: the checkpoint is being deleted, do not save one. */
  forgotten: boolean;
  done: Promise<void>;
  /** Where its reader and writer wait (debugState). */
  pipeline: PipelineState;
  /** Its share of the record budget held now (debugState). */
  heldBytes?: () => number;
}

const ZERO_CHECKSUMS = new Map<number, Buffer>();
/** sha256 of `lengthBytes` zero bytes (cached per length: senders use one chunk size). */
function zeroChecksum(lengthBytes: number): Buffer {
  let c = ZERO_CHECKSUMS.get(lengthBytes);
  if (!c) {
    c = dataChecksum(Buffer.alloc(lengthBytes));
    if (ZERO_CHECKSUMS.size > 32) ZERO_CHECKSUMS.clear();
    ZERO_CHECKSUMS.set(lengthBytes, c);
  }
  return c;
}

function abortError(signal: AbortSignal): ThinshipError {
  const r: unknown = signal.reason;
  return r instanceof ThinshipError ? r : new ThinshipError('ABORTED', `transfer stopped: ${r instanceof Error ? r.message : String(r ?? 'aborted')}`);
}

/** What a sender must keep up (see TransferRegistryOptions). */
export interface ProgressRules {
  idleTimeoutMs: number;
  minBytesPerSecond: number;
  progressWindowMs: number;
}

/**
 * Iterates src until the signal fires, then throws (even while a next() is
 * pending on a silent peer). With `rules`: throws UNAVAILABLE (retryable)
 * when no item arrives within idleTimeoutMs, or when the bytes received
 * (sizeOf) over progressWindowMs spent waiting on src fall below
 * minBytesPerSecond. Only time spent waiting on the sender counts: a slow
 * target (the receiver not asking for more) never ends a call.
 */
async function* abortable<T>(src: AsyncIterable<T>, signal: AbortSignal, rules?: ProgressRules, sizeOf: (v: T) => number = () => 0, beforeNext?: () => Promise<void>): AsyncGenerator<T> {
  const it = src[Symbol.asyncIterator]();
  let windowWaitMs = 0;
  let windowBytes = 0;
  try {
    for (;;) {
      // Waiting for the receiver's own resources (buffer budget) is not the sender's idleness.
      if (beforeNext) await beforeNext();
      // A fresh abort promise per record: racing every next() against one long-lived
      // promise would attach a reaction to it per record, and each reaction keeps its
      // record (payload included) alive until the transfer ends — measured as ~45% of
      // the volume in RSS on a full send.
      let onAbort: (() => void) | undefined;
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(abortError(signal));
        if (signal.aborted) onAbort(); else signal.addEventListener('abort', onAbort, { once: true });
      });
      aborted.catch(() => undefined);
      let idle: NodeJS.Timeout | undefined;
      const racers: Promise<IteratorResult<T>>[] = [it.next(), aborted];
      if (rules) {
        racers.push(new Promise<never>((_, reject) => {
          idle = setTimeout(() => reject(new ThinshipError('UNAVAILABLE', `no message from the sender for ${rules.idleTimeoutMs / 1000} s (idleTimeoutSeconds): the call is ended and the transfer checkpointed; resume it`, { retryable: true })), rules.idleTimeoutMs);
        }));
      }
      const t0 = performance.now();
      let r: IteratorResult<T>;
      try {
        r = await Promise.race(racers);
      } finally {
        signal.removeEventListener('abort', onAbort!);
        clearTimeout(idle);
      }
      if (r.done) return;
      if (rules && rules.minBytesPerSecond > 0) {
        windowWaitMs += performance.now() - t0;
        windowBytes += sizeOf(r.value);
        if (windowWaitMs >= rules.progressWindowMs) {
          const rate = windowBytes / (windowWaitMs / 1000);
          if (rate < rules.minBytesPerSecond) {
            throw new ThinshipError('UNAVAILABLE', `the sender sent ${windowBytes} bytes in ${(windowWaitMs / 1000).toFixed(1)} s of waiting (${Math.round(rate)} B/s), below this receiver's minBytesPerSecond ${rules.minBytesPerSecond}: the call is ended and the transfer checkpointed; resume it`, { retryable: true });
          }
          windowWaitMs = 0;
          windowBytes = 0;
        }
      }
      yield r.value;
    }
  } finally {
    void Promise.resolve(it.return?.()).catch(() => undefined); // not awaited: it may sit behind a pending next()
  }
}

/** Keeps up to n next() calls of src outstanding, so its work overlaps the consumer's. */
async function* readAhead<T>(src: AsyncIterator<T>, n: number): AsyncGenerator<T> {
  const q: Promise<IteratorResult<T>>[] = [];
  const pull = () => { const p = src.next(); p.catch(() => undefined); q.push(p); };
  try {
    for (let i = 0; i < n; i++) pull();
    for (;;) {
      const r = await q.shift()!;
      if (r.done) return;
      pull();
      yield r.value;
    }
  } finally {
    void Promise.resolve(src.return?.(undefined)).catch(() => undefined);
  }
}

/** Everything the record decoder needs to know and keeps track of. */
export interface DecodeContext {
  begin: TransferBegin;
  maxChunkBytes: number;
  /** End of the previous record (starts at the resume offset). Advanced by checkRecord, in order. */
  cursorBytes: number;
  /** The stream digest chain. Advanced by finishRecord, in order. */
  digest: StreamDigest;
  counts: Omit<Mark, 'offsetBytes' | 'digest' | 'lastData'>;
  ended: boolean;
  /** The last DATA record finished (advanced by finishRecord, in order). */
  lastData?: LastDataRecord;
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
  /** Cursor and counts after this record. */
  cursorBytes: number;
  counts: Omit<Mark, 'offsetBytes' | 'digest' | 'lastData'>;
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
  if (r.type === 'invalid') throw new ThinshipError('BAD_STREAM', `after volume offset ${ctx.cursorBytes}: ${r.what}`, { details: { volumeOffset: ctx.cursorBytes } });
  if (ctx.ended) throw new ThinshipError('BAD_STREAM', `a ${r.type} record follows the end of the stream`, { details: { volumeOffset: ctx.cursorBytes } });
  if (r.type === 'end') {
    const c = ctx.counts;
    const want = { records: c.dataRecords + c.unmapRecords + 2, dataRecords: c.dataRecords, unmapRecords: c.unmapRecords, dataBytes: c.dataBytes, unmapBytes: c.unmapBytes };
    for (const k of Object.keys(want) as (keyof typeof want)[]) {
      if (r[k] !== want[k]) throw new ThinshipError('BAD_STREAM', `end record: the sender counts ${r[k]} ${k} for the whole transfer, the receiver ${want[k]}`, { details: { volumeOffset: ctx.cursorBytes } });
    }
    if (b.checksum === 'none' && r.digest.length !== 0) throw new ThinshipError('BAD_STREAM', 'end record carries a digest but the transfer has no checksums');
    ctx.ended = true;
    return { kind: 'end', offsetBytes: ctx.cursorBytes, lengthBytes: 0, end: r, cursorBytes: ctx.cursorBytes, counts: { ...ctx.counts } };
  }
  const kind = r.type;
  const off = r.offsetBytes;
  const len = r.lengthBytes;
  if (!Number.isSafeInteger(off) || off < 0) throw recordError('BAD_STREAM', kind, off, 'not a byte offset (a non-negative integer below 2^53)');
  if (!Number.isSafeInteger(len) || len <= 0) throw recordError('BAD_STREAM', kind, off, `length ${len} must be a positive integer`);
  if (off + len > b.volumeSizeBytes) throw recordError('BAD_STREAM', kind, off, `length ${len} goes beyond the end of the volume (${b.volumeSizeBytes} bytes)`);
  if (off < ctx.cursorBytes) {
    throw recordError('BAD_STREAM', kind, off, off < b.resumeOffsetBytes
      ? `below the resume offset ${b.resumeOffsetBytes}`
      : `out of order: records must ascend without overlapping, and the previous one ends at ${ctx.cursorBytes}`);
  }
  let rec: CheckedRecord;
  if (r.type === 'unmap') {
    ctx.counts.unmapRecords++;
    ctx.counts.unmapBytes += len;
    rec = { kind: 'unmap', offsetBytes: off, lengthBytes: len, cursorBytes: off + len, counts: { ...ctx.counts } };
  } else {
    if (len > ctx.maxChunkBytes) throw recordError('BAD_STREAM', 'data', off, `length ${len} is more than this receiver's limit of ${ctx.maxChunkBytes} bytes per record`);
    if (b.checksum === 'sha256' && r.checksum.length !== SHA256_BYTES) throw recordError('BAD_STREAM', 'data', off, `checksum must be ${SHA256_BYTES} bytes (sha256), got ${r.checksum.length}`);
    if (b.checksum === 'none' && r.checksum.length !== 0) throw recordError('BAD_STREAM', 'data', off, 'carries a checksum but the transfer has none');
    ctx.counts.dataRecords++;
    ctx.counts.dataBytes += len;
    const counts = { ...ctx.counts };
    if (r.encoding === 'zero') {
      if (r.payload.length !== 0) throw recordError('BAD_STREAM', 'data', off, `encoding ZERO with a ${r.payload.length}-byte payload (must be empty)`);
      if (b.checksum === 'sha256' && !zeroChecksum(len).equals(r.checksum)) throw recordError('CHECKSUM_MISMATCH', 'data', off, `checksum mismatch over ${len} zero bytes; not written`);
      rec = { kind: 'zero', offsetBytes: off, lengthBytes: len, cursorBytes: off + len, counts };
    } else {
      if (r.encoding === 'raw' && r.payload.length !== len) throw recordError('BAD_STREAM', 'data', off, `raw payload of ${r.payload.length} bytes, the record says ${len}`);
      if (r.encoding === 'zstd' && b.compression !== 'zstd') throw recordError('BAD_STREAM', 'data', off, 'zstd payload in a transfer that announced no compression');
      const work = checker({ offsetBytes: off, lengthBytes: len, payload: r.payload, encoding: r.encoding, checksum: b.checksum === 'sha256' ? r.checksum : undefined, detachable: r.detachable });
      if (work instanceof Promise) work.catch(() => undefined); // awaited in order by finishRecord
      rec = { kind: 'data', offsetBytes: off, lengthBytes: len, work, cursorBytes: off + len, counts };
    }
  }
  ctx.cursorBytes = off + len;
  return rec;
}

/** In stream order: the payload's result, the digest chain, the end's digest; the message to apply and the mark after it. */
export function finishWith(c: CheckedRecord, ctx: DecodeContext, done: DataChecked | undefined): DecodedRecord {
  const sha = ctx.begin.checksum === 'sha256';
  let msg: StreamMessage;
  if (c.kind === 'end') {
    const e = c.end!;
    if (sha && !ctx.digest.matches(e.digest)) {
      throw new ThinshipError('CHECKSUM_MISMATCH', `end record: stream digest mismatch (sender ${e.digest.toString('hex') || 'none'}, receiver ${ctx.digest.state.toString('hex')})`, { details: { volumeOffset: c.offsetBytes } });
    }
    msg = { type: 'end', records: c.counts.dataRecords + c.counts.unmapRecords + 2, dataRecords: c.counts.dataRecords, unmapRecords: c.counts.unmapRecords, dataBytes: c.counts.dataBytes, unmapBytes: c.counts.unmapBytes, digest: ctx.digest.state };
  } else if (c.kind === 'unmap') {
    if (sha) ctx.digest.addUnmap(c.offsetBytes, c.lengthBytes);
    msg = { type: 'unmap', offsetBytes: c.offsetBytes, lengthBytes: c.lengthBytes };
  } else if (c.kind === 'zero') {
    if (sha) ctx.digest.addData(c.offsetBytes, c.lengthBytes, zeroChecksum(c.lengthBytes));
    // All-zero chunks are made to read as zeros (discard / hole) rather than written.
    msg = { type: 'unmap', offsetBytes: c.offsetBytes, lengthBytes: c.lengthBytes };
  } else {
    if (sha) {
      ctx.digest.addData(c.offsetBytes, c.lengthBytes, done!.sum!);
      ctx.lastData = { offsetBytes: c.offsetBytes, lengthBytes: c.lengthBytes, sha256: done!.sum!.toString('hex') };
    }
    msg = { type: 'data', offsetBytes: c.offsetBytes, data: done!.data };
  }
  return { msg, mark: { offsetBytes: c.cursorBytes, digest: ctx.digest.state, lastData: ctx.lastData, ...c.counts } };
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
  if (bytes(b.sourceId) > MAX_ID_FIELD_BYTES) throw bad(`source_id is ${bytes(b.sourceId)} bytes, more than ${MAX_ID_FIELD_BYTES}`);
  if (bytes(b.baseId) > MAX_ID_FIELD_BYTES) throw bad(`base_id is ${bytes(b.baseId)} bytes, more than ${MAX_ID_FIELD_BYTES}`);
  if (!Number.isSafeInteger(b.volumeSizeBytes) || b.volumeSizeBytes <= 0) throw bad(`volume_size_bytes ${b.volumeSizeBytes} must be positive`);
  if (b.volumeSizeBytes > maxVolume) throw bad(`volume_size_bytes ${b.volumeSizeBytes} is more than this receiver's maxVolumeBytes ${maxVolume}`);
  const bs = b.blockSizeBytes;
  if (!Number.isSafeInteger(bs) || (bs !== 0 && (bs < MIN_BLOCK_BYTES || bs > MAX_BLOCK_BYTES || bs % MIN_BLOCK_BYTES !== 0))) {
    throw bad(`block_size_bytes ${bs} must be 0 (not given) or a dm-thin block size: a multiple of ${MIN_BLOCK_BYTES} from ${MIN_BLOCK_BYTES} to ${MAX_BLOCK_BYTES}`);
  }
  for (const [f, v] of [['planned_data_bytes', b.plannedDataBytes], ['planned_unmap_bytes', b.plannedUnmapBytes]] as const) {
    if (!Number.isSafeInteger(v) || v < 0 || v > b.volumeSizeBytes) throw bad(`${f} ${v} must be 0 to volume_size_bytes (${b.volumeSizeBytes})`);
  }
  if (b.plannedDataBytes + b.plannedUnmapBytes > b.volumeSizeBytes) throw bad(`planned_data_bytes + planned_unmap_bytes (${b.plannedDataBytes + b.plannedUnmapBytes}) is more than volume_size_bytes (${b.volumeSizeBytes})`);
  if (!Number.isSafeInteger(b.resumeOffsetBytes) || b.resumeOffsetBytes < 0 || b.resumeOffsetBytes > b.volumeSizeBytes) throw bad(`resume_offset_bytes ${b.resumeOffsetBytes} is outside the volume`);
  if (b.sourceId === '') throw bad('source_id is empty');
  if (b.mode === 'incremental' && b.baseId === '') throw bad('an incremental transfer needs base_id');
  if (b.mode === 'full' && b.baseId !== '') throw bad('a full transfer must not name a base');
  if (b.checksum === 'none' && o.requireChecksum) throw bad('this receiver requires checksums (CHECKSUM_ALGORITHM_SHA256)');
}

function hex(b: Buffer): string {
  return b.toString('hex');
}

/** Bytes a received record holds until written: the message, the decoder's copy, zstd's output. */
function recordBytes(r: WireRecord): number {
  if (r.type !== 'data') return MESSAGE_COST_BYTES;
  return 2 * (r.payload.length + MESSAGE_COST_BYTES) + (r.encoding === 'zstd' ? r.lengthBytes : 0);
}

/**
 * One transfer's part of the record budget, in stream order: a reservation
 * before each message, cut down to the record's size when it arrives, given
 * back when the record is written; close() gives back the rest (and any
 * reservation that completes later).
 */
class SessionHoldings {
  private readonly perRecord: number[] = [];
  private pending = 0;
  private closed = false;

  constructor(private readonly budget: BufferBudget, private readonly signal: AbortSignal) {}

  async reserve(bytes: number): Promise<void> {
    const got = await this.budget.acquire(bytes, this.signal);
    if (this.closed) {
      this.budget.release(got);
      throw new ThinshipError('ABORTED', 'the transfer has ended');
    }
    this.pending += got;
  }

  get heldBytes(): number {
    return this.pending + this.perRecord.reduce((a, b) => a + b, 0);
  }

  arrived(bytes: number): void {
    const keep = Math.min(bytes, this.pending);
    this.budget.release(this.pending - keep);
    this.pending = 0;
    this.perRecord.push(keep);
  }

  applied(): void {
    this.budget.release(this.perRecord.shift() ?? 0);
  }

  close(): void {
    this.closed = true;
    this.budget.release(this.pending + this.perRecord.reduce((a, b) => a + b, 0));
    this.pending = 0;
    this.perRecord.length = 0;
  }
}

/** Registry key of a transfer: transfer ids are scoped by the client identity. */
function keyOf(identity: string, transferId: string): string {
  return JSON.stringify([identity, transferId]);
}

/** Bytes a wire record cost the sender to send (for the progress rate). */
function wireBytes(r: WireRecord): number {
  return MESSAGE_COST_BYTES + (r.type === 'data' ? r.payload.length : 0);
}

/** The target is not what transfer `cp` wrote (removed, or re-created): it holds nothing of it. */
function replacedError(cp: TransferCheckpoint, b: TransferBegin, now: string | undefined): ThinshipError {
  const how = now === undefined ? 'was removed' : 'was replaced';
  const advice = b.mode === 'incremental' ? `it no longer holds ${cp.sourceId}, the base this incremental applies to: send a full stream` : 'ask GetTransferState and send again from offset 0';
  // A full transfer only has to start over (RESUME_MISMATCH: a sender asks again); an incremental cannot apply.
  return new ThinshipError(b.mode === 'incremental' ? 'BASE_MISMATCH' : 'RESUME_MISMATCH', `target ${b.target} ${how} since transfer ${cp.transferId} wrote it (then ${cp.targetIdentity}, now ${now ?? 'missing'}): ${advice}`, { details: { transferId: cp.transferId, recorded: cp.targetIdentity, now } });
}

export class TransferRegistry {
  readonly store: CheckpointStore;
  private readonly checkpoints = new Map<string, TransferCheckpoint>();
  private readonly sessions = new Map<string, Session>();
  private readonly o: Required<Omit<TransferRegistryOptions, 'stateDir' | 'policy' | 'log' | 'onActiveChange'>>;
  /** Records received and not yet written, of every transfer (half of maxBufferedBytes). */
  readonly recordBudget: BufferBudget;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private decodePool: DecodePool | undefined;
  private lock: StateDirLock | undefined;

  constructor(private readonly opts: TransferRegistryOptions) {
    this.store = new CheckpointStore(opts.stateDir);
    this.o = {
      checkpointIntervalBytes: opts.checkpointIntervalBytes ?? DEFAULT_CHECKPOINT_INTERVAL_BYTES,
      maxChunkBytes: opts.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES,
      expiryMs: opts.expiryMs ?? DEFAULT_TRANSFER_EXPIRY_MS,
      requireChecksum: opts.requireChecksum ?? true,
      maxActiveTransfers: opts.maxActiveTransfers ?? DEFAULT_MAX_ACTIVE_TRANSFERS,
      maxActiveTransfersPerIdentity: opts.maxActiveTransfersPerIdentity ?? defaultMaxActivePerIdentity(opts.maxActiveTransfers ?? DEFAULT_MAX_ACTIVE_TRANSFERS),
      maxStoredTransfersPerIdentity: opts.maxStoredTransfersPerIdentity ?? DEFAULT_MAX_STORED_TRANSFERS_PER_IDENTITY,
      maxVolumeBytes: opts.maxVolumeBytes ?? DEFAULT_MAX_VOLUME_BYTES,
      maxCompletedTransfersPerIdentity: opts.maxCompletedTransfersPerIdentity ?? DEFAULT_MAX_COMPLETED_TRANSFERS_PER_IDENTITY,
      idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
      minBytesPerSecond: opts.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND,
      progressWindowMs: opts.progressWindowMs ?? DEFAULT_PROGRESS_WINDOW_MS,
      decodeWorkers: opts.decodeWorkers ?? defaultWorkerCount(),
      maxBufferedBytes: opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
    };
    this.recordBudget = new BufferBudget(Math.floor(this.o.maxBufferedBytes / 2));
  }

  /**
   * Per running transfer, what the network may hold for it in this receiver
   * (HTTP/2 stream window plus one message in gRPC's queue): an equal share
   * of the other half of maxBufferedBytes.
   */
  windowShareBytes(active: number): number {
    return Math.floor(this.o.maxBufferedBytes / 2 / Math.max(1, active));
  }

  /** No message for this long ends a call (also while waiting for its Begin). */
  get idleTimeoutMs(): number {
    return this.o.idleTimeoutMs;
  }

  /** Running ApplyStream calls (tests wait on this). */
  get activeCount(): number {
    return this.sessions.size;
  }

  /** Every running transfer's pipeline stage and budget share, and the record budget (serve logs it on SIGUSR2). */
  debugState(): { recordBudget: ReturnType<BufferBudget['snapshot']>; transfers: ({ transferId: string; identity: string; heldBytes: number } & PipelineSnapshot)[] } {
    return {
      recordBudget: this.recordBudget.snapshot(),
      transfers: [...this.sessions.values()].map((s) => ({ transferId: s.transferId, identity: s.identity, heldBytes: s.heldBytes?.() ?? 0, ...s.pipeline.snapshot() })),
    };
  }

  get maxChunkBytes(): number {
    return this.o.maxChunkBytes;
  }

  get policy(): AccessPolicy {
    return this.opts.policy;
  }

  /**
   * Locks the state directory (one receiver per state directory), loads the
   * checkpoints left by an earlier run (an unusable file is quarantined, never
   * fatal), forgets expired ones, and starts the expiry timer.
   */
  async start(): Promise<void> {
    await mkdir(this.opts.stateDir, { recursive: true, mode: 0o700 });
    this.lock = await StateDirLock.acquire(this.opts.stateDir);
    try {
      await this.store.init();
      const listed = await this.store.list();
      for (const q of listed.quarantined) this.opts.log.warn({ file: q.file, movedTo: q.movedTo, reason: q.reason }, 'unusable checkpoint moved to quarantine (its transfer starts over)');
      if (listed.migrated.length > 0) this.opts.log.info({ transfers: listed.migrated.length }, 'format-1 checkpoints migrated (checksummed, per-identity file names)');
      for (const cp of listed.checkpoints) this.checkpoints.set(keyOf(cp.identity, cp.transferId), cp);
    } catch (e) {
      await this.lock.release().catch(() => undefined);
      throw e;
    }
    if (this.o.decodeWorkers > 0) this.decodePool = new DecodePool(this.o.decodeWorkers);
    await this.sweep();
    const every = Math.max(1000, Math.min(60_000, Math.floor(this.o.expiryMs / 4)));
    this.sweepTimer = setInterval(() => { this.sweep().catch((e) => this.opts.log.error({ err: asThinshipError(e).message }, 'expiry sweep failed')); }, every);
    this.sweepTimer.unref();
    this.opts.log.info({ stateDir: this.opts.stateDir, transfers: this.checkpoints.size }, 'transfer registry started');
  }

  /** Forgets transfers not touched within the expiry time (their targets become free). */
  async sweep(now = Date.now()): Promise<string[]> {
    const gone: string[] = [];
    for (const cp of [...this.checkpoints.values()]) {
      const k = keyOf(cp.identity, cp.transferId);
      if (this.sessions.has(k) || cp.updatedUnixMs + this.o.expiryMs > now) continue;
      this.checkpoints.delete(k);
      await this.store.remove(cp.identity, cp.transferId);
      gone.push(cp.transferId);
      this.opts.log.info({ transferId: cp.transferId, target: cp.target, status: cp.status, durableOffsetBytes: cp.durableOffsetBytes }, 'transfer expired and forgotten');
    }
    return gone;
  }

  /** Stops every running transfer (each checkpoints what it applied) and the timer. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    const running = [...this.sessions.values()];
    for (const s of running) s.controller.abort(new ThinshipError('UNAVAILABLE', 'the receiver is shutting down; resume later', { retryable: true }));
    await Promise.allSettled(running.map((s) => s.done));
    await this.decodePool?.close();
    await this.lock?.release();
  }

  private view(cp: TransferCheckpoint): TransferStateView {
    return { ...cp, active: this.sessions.has(keyOf(cp.identity, cp.transferId)), expiresUnixMs: cp.updatedUnixMs + this.o.expiryMs };
  }

  /** The caller's own transfer: another identity's transfer of the same id is not even said to exist. */
  private owned(who: ClientIdentity, transferId: string): TransferCheckpoint {
    checkTransferId(transferId);
    const cp = this.checkpoints.get(keyOf(ownerName(this.opts.policy, who.names), transferId));
    if (!cp) throw new ThinshipError('NOT_FOUND', `no transfer ${transferId} on this receiver (never begun, finished and expired, or aborted)`);
    return cp;
  }

  /**
   * Answered from the target as well as the record: a target removed or
   * replaced since the transfer wrote it holds nothing of it, so the transfer
   * is reported as not begun (in progress at offset 0), and a sender sends it
   * again from the start (apply() refuses that for an incremental).
   */
  async state(who: ClientIdentity, transferId: string): Promise<TransferStateView> {
    const cp = this.owned(who, transferId);
    if (cp.targetIdentity === undefined || this.sessions.has(keyOf(cp.identity, transferId))) return this.view(cp);
    const target = await authorizeTarget(this.opts.policy, who, cp.target).catch(() => undefined);
    if (!target || (await currentTargetIdentity(target)) === cp.targetIdentity) return this.view(cp);
    return {
      ...this.view(cp), status: 'in_progress', durableOffsetBytes: 0, digestState: hex(Buffer.alloc(SHA256_BYTES)),
      dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0,
    };
  }

  async abort(who: ClientIdentity, transferId: string, reason: string): Promise<{ stopped: boolean; durableOffsetBytes: number }> {
    const cp = this.owned(who, transferId);
    const k = keyOf(cp.identity, transferId);
    const s = this.sessions.get(k);
    if (s) {
      s.forgotten = true;
      s.controller.abort(new ThinshipError('ABORTED', `transfer ${transferId} was aborted by AbortTransfer${reason ? ` (${reason})` : ''}`));
      await s.done;
    }
    this.checkpoints.delete(k);
    await this.store.remove(cp.identity, transferId);
    this.opts.log.info({ transferId, identity: who.name, reason, stoppedActiveStream: !!s, durableOffsetBytes: cp.durableOffsetBytes }, 'transfer aborted');
    return { stopped: !!s, durableOffsetBytes: cp.durableOffsetBytes };
  }

  /**
   * A transfer just completed on a target: earlier completed transfers to it no
   * longer describe what it holds, so forget them (a sender re-running one of
   * them then sends it again instead of hearing "already complete").
   */
  private async forgetSuperseded(done: TransferCheckpoint): Promise<void> {
    for (const cp of [...this.checkpoints.values()]) {
      if ((cp.transferId === done.transferId && cp.identity === done.identity) || cp.targetKey !== done.targetKey || cp.status !== 'complete') continue;
      this.checkpoints.delete(keyOf(cp.identity, cp.transferId));
      await this.store.remove(cp.identity, cp.transferId);
    }
  }

  /** Keeps at most maxCompletedTransfersPerIdentity completed transfers of an identity (state stays bounded). */
  private async forgetOldestCompleted(identity: string): Promise<void> {
    const keep = this.o.maxCompletedTransfersPerIdentity;
    const done = [...this.checkpoints.values()].filter((c) => c.identity === identity && c.status === 'complete');
    if (done.length <= keep) return;
    done.sort((x, y) => x.updatedUnixMs - y.updatedUnixMs);
    for (const c of done.slice(0, done.length - keep)) {
      this.checkpoints.delete(keyOf(c.identity, c.transferId));
      await this.store.remove(c.identity, c.transferId);
    }
  }

  /** Who holds a target: a running session or an unfinished, unexpired checkpoint of another transfer. */
  private holderOf(targetKey: string, exceptKey: string): { transferId: string; identity: string; checkpoint?: TransferCheckpoint } | undefined {
    for (const s of this.sessions.values()) if (s.targetKey === targetKey && s.key !== exceptKey) return { transferId: s.transferId, identity: s.identity, checkpoint: this.checkpoints.get(s.key) };
    for (const cp of this.checkpoints.values()) {
      if (cp.status === 'in_progress' && cp.targetKey === targetKey && keyOf(cp.identity, cp.transferId) !== exceptKey) return { transferId: cp.transferId, identity: cp.identity, checkpoint: cp };
    }
    return undefined;
  }

  /**
   * The limits a new call must fit in: the receiver's running calls, the
   * identity's share of them, and (for a new transfer) the identity's stored
   * unfinished transfers. Each refusal names the limit it hit (never another
   * identity's transfers).
   */
  private checkCapacity(identity: string, isNew: boolean): void {
    if (this.sessions.size >= this.o.maxActiveTransfers) {
      throw new ThinshipError('TRANSFER_BUSY', `this receiver is already running ${this.sessions.size} transfers (its limit, maxActiveTransfers ${this.o.maxActiveTransfers})`, { retryable: true });
    }
    let mine = 0;
    for (const s of this.sessions.values()) if (s.identity === identity) mine++;
    if (mine >= this.o.maxActiveTransfersPerIdentity) {
      throw new ThinshipError('TRANSFER_BUSY', `identity "${identity}" is already running ${mine} transfers on this receiver (its limit, maxActiveTransfersPerIdentity ${this.o.maxActiveTransfersPerIdentity})`, { retryable: true });
    }
    if (!isNew) return;
    let stored = 0;
    for (const cp of this.checkpoints.values()) if (cp.identity === identity && cp.status === 'in_progress') stored++;
    if (stored >= this.o.maxStoredTransfersPerIdentity) {
      throw new ThinshipError('TRANSFER_BUSY', `identity "${identity}" has ${stored} unfinished transfers stored on this receiver (its limit, maxStoredTransfersPerIdentity ${this.o.maxStoredTransfersPerIdentity}): resume or abort one (AbortTransfer), or let them expire`, { retryable: false });
    }
  }

  /**
   * Applies one ApplyStream call: `records` are the messages after the begin.
   * `signal` fires when the caller goes away.
   */
  async apply(who: ClientIdentity, begin: TransferBegin, records: AsyncIterable<WireRecord>, signal?: AbortSignal): Promise<ApplyResult> {
    if (this.closing) throw new ThinshipError('UNAVAILABLE', 'the receiver is shutting down', { retryable: true });
    checkBegin(begin, this.o);
    const identity = ownerName(this.opts.policy, who.names);
    const target = await authorizeTarget(this.opts.policy, who, begin.target);
    const id = begin.transferId;
    // Transfer ids are per identity: another identity's transfer of the same id is another transfer.
    const key = keyOf(identity, id);
    // The records are checked against the target itself (identity recorded by run()).
    const recorded = (c: TransferCheckpoint) => c.targetIdentity !== undefined && ((c.identity === identity && c.transferId === id) || (begin.mode === 'incremental' && c.targetKey === target.key && c.status === 'complete'));
    const now = [...this.checkpoints.values()].some(recorded) ? await currentTargetIdentity(target) : undefined;

    // Claim the transfer and its target. Everything between the awaits below is synchronous.
    let cp: TransferCheckpoint | undefined;
    for (let tries = 0; ; tries++) {
      cp = this.checkpoints.get(key);
      if (cp) this.checkSameTransfer(cp, begin, target);
      const old = this.sessions.get(key);
      if (old && tries < 3) {
        // The same sender came back (its old connection may not look dead yet): stop the old call and take over.
        this.opts.log.info({ transferId: id }, 'a new call for a running transfer: stopping the old one');
        old.controller.abort(new ThinshipError('ABORTED', `transfer ${id} was taken over by a newer call`));
        await old.done;
        continue;
      }
      if (old) throw new ThinshipError('TRANSFER_BUSY', `transfer ${id} is still running in another call`, { retryable: true });
      break;
    }
    const holder = this.holderOf(target.key, key);
    if (holder && holder.identity !== identity) {
      // Another identity's transfer: say nothing about it (not its id, not when it expires).
      throw new ThinshipError('TRANSFER_BUSY', `target ${begin.target} is in use by another transfer (running, or resumable until it expires)`);
    }
    if (holder) {
      const h = holder.checkpoint;
      const until = h ? `; it expires at ${new Date(h.updatedUnixMs + this.o.expiryMs).toISOString()} unless resumed` : '';
      throw new ThinshipError('TRANSFER_BUSY', `target ${begin.target} is in use by transfer ${holder.transferId} (running, or resumable: abort it with AbortTransfer${until})`, { details: { holder: holder.transferId } });
    }
    if (cp?.targetIdentity !== undefined && cp.targetIdentity !== now) {
      // A full transfer starts over (its first checkpoint replaces this record); an incremental has lost its base.
      if (begin.mode === 'incremental') throw replacedError(cp, begin, now);
      this.opts.log.info({ transferId: id, target: begin.target, recorded: cp.targetIdentity, now: now ?? 'missing' }, 'target replaced since the transfer wrote it: starting over');
      cp = undefined;
    }
    // A transfer starting over replaces its own stored record: not a new one for the stored cap.
    this.checkCapacity(identity, !this.checkpoints.has(key));
    if (!cp && begin.mode === 'incremental') this.checkBase(begin, target.key, identity, now);
    if (cp?.status === 'complete') throw new ThinshipError('RESUME_MISMATCH', `transfer ${id} is already complete (durable at ${cp.durableOffsetBytes}); send with a new transfer id to send it again`);
    const durable = cp?.durableOffsetBytes ?? 0;
    if (begin.resumeOffsetBytes !== durable) {
      throw new ThinshipError('RESUME_MISMATCH', `transfer ${id}: resume offset ${begin.resumeOffsetBytes} does not match the receiver's durable offset ${durable}${cp ? '' : ' (the receiver has no record of this transfer)'}; ask GetTransferState and resume from there`, { details: { durableOffsetBytes: durable } });
    }

    const controller = new AbortController();
    let finish!: () => void;
    const session: Session = { key, transferId: id, targetKey: target.key, identity, controller, forgotten: false, pipeline: new PipelineState(), done: new Promise<void>((r) => { finish = r; }) };
    this.sessions.set(key, session);
    this.opts.onActiveChange?.(this.sessions.size);
    const onCallerGone = () => controller.abort(signal!.reason ?? new ThinshipError('UNAVAILABLE', 'the sender went away', { retryable: true }));
    if (signal?.aborted) onCallerGone(); else signal?.addEventListener('abort', onCallerGone, { once: true });
    try {
      return await this.run(session, who, begin, target, cp, records);
    } finally {
      signal?.removeEventListener('abort', onCallerGone);
      // Whatever of this call still waits (a buffer reservation behind a read-ahead) stops now.
      controller.abort(new ThinshipError('ABORTED', `transfer ${id}: the call has ended`));
      this.sessions.delete(key);
      this.opts.onActiveChange?.(this.sessions.size);
      finish();
    }
  }

  /**
   * ZFS's rule: an incremental applies only onto its base. The receiver knows
   * what a target holds from the last transfer it completed there; a target it
   * has no record of (seeded by pipe mode, or by hand) is taken on trust.
   */
  private checkBase(b: TransferBegin, targetKey: string, identity: string, now: string | undefined): void {
    let last: TransferCheckpoint | undefined;
    for (const cp of this.checkpoints.values()) {
      if (cp.targetKey === targetKey && cp.status === 'complete' && (!last || cp.updatedUnixMs > last.updatedUnixMs)) last = cp;
    }
    if (last?.targetIdentity !== undefined && last.targetIdentity !== now) {
      // Another identity's transfer: say nothing about it.
      if (last.identity !== identity) throw new ThinshipError('BASE_MISMATCH', `target ${b.target} was replaced since another identity's transfer wrote it: send a full stream`, { details: { base: b.baseId } });
      throw replacedError(last, b, now);
    }
    if (last && last.sourceId !== b.baseId && last.identity !== identity) {
      throw new ThinshipError('BASE_MISMATCH', `target ${b.target} was last written by another identity's transfer, not from base ${b.baseId}: send a full stream`, { details: { base: b.baseId } });
    }
    if (last && last.sourceId !== b.baseId) {
      throw new ThinshipError('BASE_MISMATCH', `target ${b.target} holds ${last.sourceId} (transfer ${last.transferId}), but this incremental stream applies to base ${b.baseId}: send the increment from ${last.sourceId}, or a full stream`, { details: { holds: last.sourceId, base: b.baseId } });
    }
  }

  private checkSameTransfer(cp: TransferCheckpoint, b: TransferBegin, t: AllowedTarget): void {
    const diffs: string[] = [];
    if (cp.targetKey !== t.key) diffs.push(`target ${cp.target} vs ${b.target}`);
    if (cp.mode !== b.mode) diffs.push(`mode ${cp.mode} vs ${b.mode}`);
    if (cp.sourceId !== b.sourceId) diffs.push(`source ${cp.sourceId} vs ${b.sourceId}`);
    if (cp.baseId !== b.baseId) diffs.push(`base ${cp.baseId} vs ${b.baseId}`);
    if (cp.volumeSizeBytes !== b.volumeSizeBytes) diffs.push(`volume size ${cp.volumeSizeBytes} vs ${b.volumeSizeBytes}`);
    if (cp.checksum !== b.checksum) diffs.push(`checksum ${cp.checksum} vs ${b.checksum}`);
    if (diffs.length > 0) throw new ThinshipError('RESUME_MISMATCH', `transfer id ${cp.transferId} was begun with different parameters (${diffs.join('; ')}); use another transfer id`);
  }

  /**
   * Before a resume: the last DATA record below the durable offset must still
   * read back as what was written. If not, the target changed since (written
   * by someone else, restored, swapped), and continuing would leave a target
   * that is neither the old nor the new content while the digest "verifies".
   */
  private async checkLastData(handle: VolumeHandle, cp: TransferCheckpoint): Promise<void> {
    const l = cp.lastData!;
    const buf = Buffer.alloc(l.lengthBytes);
    const n = await handle.readAt(buf, l.offsetBytes, l.lengthBytes);
    const sum = createHash('sha256').update(buf.subarray(0, n)).digest('hex');
    if (n !== l.lengthBytes || sum !== l.sha256) {
      throw new ThinshipError('RESUME_MISMATCH', `transfer ${cp.transferId} cannot resume: the target's bytes at ${l.offsetBytes}..${l.offsetBytes + l.lengthBytes} (the last record applied before the checkpoint) are no longer what was written, so the target changed since; the transfer must start over: abort it (AbortTransfer) and send again`, { details: { volumeOffset: l.offsetBytes } });
    }
  }

  /** Opens a target for writing (target.ts). One method, so tests can watch the handle the registry writes through. */
  protected openTarget(...a: Parameters<typeof openTransferTarget>): ReturnType<typeof openTransferTarget> {
    return openTransferTarget(...a);
  }

  private async run(s: Session, who: ClientIdentity, begin: TransferBegin, target: AllowedTarget, existing: TransferCheckpoint | undefined, records: AsyncIterable<WireRecord>): Promise<ApplyResult> {
    const log = this.opts.log.child({ transferId: s.transferId, identity: who.name, target: begin.target });
    const now = Date.now();
    let cp: TransferCheckpoint = existing ?? {
      format: 2, transferId: s.transferId, status: 'in_progress', identity: s.identity, target: begin.target, targetKey: target.key,
      mode: begin.mode, sourceId: begin.sourceId, baseId: begin.baseId, volumeSizeBytes: begin.volumeSizeBytes, blockSizeBytes: begin.blockSizeBytes,
      checksum: begin.checksum, durableOffsetBytes: 0, digestState: hex(Buffer.alloc(SHA256_BYTES)),
      dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0, createdUnixMs: now, updatedUnixMs: now,
    };
    log.info({ mode: begin.mode, volumeSizeBytes: begin.volumeSizeBytes, resumeOffsetBytes: begin.resumeOffsetBytes, plannedDataBytes: begin.plannedDataBytes, resuming: !!existing }, existing ? 'transfer resuming' : 'transfer begin');
    const { handle, release, identity } = await this.openTarget(target, {
      volumeSizeBytes: begin.volumeSizeBytes,
      mustExist: begin.mode === 'incremental' ? 'an incremental stream applies only to a target holding its base' : existing ? 'it was removed during the transfer' : undefined,
    });
    if (existing?.targetIdentity !== undefined && identity !== existing.targetIdentity) {
      // Replaced between apply()'s look and the open: what is open now holds nothing of this transfer.
      await handle.close().catch(() => undefined);
      await release().catch(() => undefined);
      throw replacedError(existing, begin, identity);
    }
    cp = { ...cp, targetIdentity: identity };
    if (handle.sizeBytes < begin.volumeSizeBytes) {
      // Refused before the transfer is recorded: a refused begin holds nothing.
      await handle.close().catch(() => undefined);
      await release().catch(() => undefined);
      throw new ThinshipError('TARGET_TOO_SMALL', `the stream is for a volume of ${begin.volumeSizeBytes} bytes but target ${begin.target} has only ${handle.sizeBytes} bytes; nothing was written`);
    }
    if (existing?.lastData) {
      try {
        await this.checkLastData(handle, existing);
      } catch (e) {
        await handle.close().catch(() => undefined);
        await release().catch(() => undefined);
        throw e;
      }
    }
    const t0 = performance.now();
    const held = new SessionHoldings(this.recordBudget, s.controller.signal);
    const ctx: DecodeContext = {
      begin, maxChunkBytes: this.o.maxChunkBytes, cursorBytes: cp.durableOffsetBytes,
      digest: new StreamDigest(Buffer.from(cp.digestState, 'hex')),
      counts: { dataRecords: cp.dataRecords, unmapRecords: cp.unmapRecords, dataBytes: cp.dataBytes, unmapBytes: cp.unmapBytes },
      ended: false,
    };
    ctx.lastData = cp.lastData;
    let applied: Mark = { offsetBytes: cp.durableOffsetBytes, digest: ctx.digest.state, lastData: cp.lastData, ...ctx.counts };
    let lastSaved = applied;
    const save = async (m: Mark, status: TransferCheckpoint['status']) => {
      cp = { ...cp, status, durableOffsetBytes: m.offsetBytes, digestState: hex(m.digest), dataRecords: m.dataRecords, unmapRecords: m.unmapRecords, dataBytes: m.dataBytes, unmapBytes: m.unmapBytes, updatedUnixMs: Date.now() };
      if (m.lastData) cp.lastData = m.lastData;
      await this.store.save(cp);
      this.checkpoints.set(s.key, cp);
      lastSaved = m;
      log.info({ durableOffsetBytes: m.offsetBytes, dataBytes: m.dataBytes, status }, 'checkpoint');
    };
    try {
      // The transfer (and its target) is recorded before anything is written.
      if (!existing) await save(applied, 'in_progress');
      const dz = new ChunkDecompressor();
      const pool = this.decodePool;
      const checker: DataChecker = pool ? (j) => pool.check(j) : (j) => checkData(j, dz);
      const self = this;
      // Before asking for a message: its worst case (the message, the decoder's copy, zstd's output).
      const worstBytes = 2 * (this.o.maxChunkBytes + MESSAGE_OVERHEAD_BYTES) + (begin.compression === 'zstd' ? this.o.maxChunkBytes : 0);
      const stage = s.pipeline;
      s.heldBytes = () => held.heldBytes;
      const reserve = async () => { stage.reading('record budget'); await held.reserve(worstBytes); stage.reading('sender'); };
      async function* checked(): AsyncGenerator<CheckedRecord> {
        for await (const r of abortable(records, s.controller.signal, self.o, wireBytes, reserve)) {
          held.arrived(recordBytes(r));
          stage.recordsReceived++;
          const c = checkRecord(r, ctx, checker);
          stage.reading('read-ahead full');
          yield c;
        }
        stage.reading('ended');
      }
      async function* messages(): AsyncGenerator<StreamMessage> {
        yield {
          type: 'begin',
          info: {
            formatVersion: '1.1', volumeSizeBytes: begin.volumeSizeBytes, blockSizeBytes: begin.blockSizeBytes || undefined,
            sourceId: begin.sourceId, baseId: begin.baseId || undefined, incremental: begin.mode === 'incremental',
            transferId: begin.transferId, checksum: begin.checksum, plannedDataBytes: begin.plannedDataBytes, plannedUnmapBytes: begin.plannedUnmapBytes,
          },
        };
        // Up to DECODE_AHEAD_RECORDS records are checked and decoding (on the workers) while one is written.
        stage.writing('next record');
        for await (const c of readAhead(checked(), DECODE_AHEAD_RECORDS)) {
          stage.writing('decode');
          const d = await finishRecord(c, ctx);
          stage.writing('write');
          yield d.msg;
          held.applied();
          stage.recordsApplied++;
          stage.writing('next record');
          // Back here, applyMessages has applied d (it awaits each write before asking for more).
          if (d.msg.type === 'end') continue;
          applied = d.mark;
          const sinceBytes = applied.dataBytes - lastSaved.dataBytes;
          const sinceRecords = applied.dataRecords + applied.unmapRecords - lastSaved.dataRecords - lastSaved.unmapRecords;
          if (sinceBytes >= self.o.checkpointIntervalBytes || sinceRecords >= CHECKPOINT_INTERVAL_RECORDS) {
            stage.writing('checkpoint');
            await handle.flush();
            await save(applied, 'in_progress');
            stage.writing('next record');
          }
        }
        stage.writing('ended');
      }
      const summary = await applyMessages(messages(), handle, { resumeFromBytes: begin.resumeOffsetBytes });
      // applyMessages flushed the target after the end record (and zeroed a full stream's tail).
      const end: Mark = { offsetBytes: begin.volumeSizeBytes, digest: ctx.digest.state, lastData: ctx.lastData, ...ctx.counts };
      await save(end, 'complete');
      await this.forgetSuperseded(cp);
      await this.forgetOldestCompleted(cp.identity);
      const secs = (performance.now() - t0) / 1000;
      const sessionData = ctx.counts.dataBytes - (existing?.dataBytes ?? 0);
      log.info({ seconds: Number(secs.toFixed(3)), dataBytes: sessionData, bytesWritten: summary.bytesWritten, bytesDiscarded: summary.bytesDiscarded, mibPerSecond: Number((sessionData / 1048576 / Math.max(secs, 1e-9)).toFixed(1)), digest: hex(end.digest) }, 'transfer complete');
      return {
        transferId: s.transferId,
        dataRecordsApplied: ctx.counts.dataRecords - (existing?.dataRecords ?? 0),
        unmapRecordsApplied: ctx.counts.unmapRecords - (existing?.unmapRecords ?? 0),
        bytesWritten: summary.bytesWritten,
        bytesDiscarded: summary.bytesDiscarded + summary.gapBytesZeroed,
        digest: begin.checksum === 'sha256' ? end.digest : Buffer.alloc(0),
        state: this.view(cp),
      };
    } catch (e) {
      const err = asThinshipError(e);
      // Keep what was applied: flush, then checkpoint at the last applied record, so a resume re-sends nothing of it.
      if (!s.forgotten && applied.offsetBytes > lastSaved.offsetBytes) {
        try {
          await handle.flush();
          await save(applied, 'in_progress');
        } catch (e2) {
          log.error({ err: asThinshipError(e2).message }, 'could not checkpoint after the error; the last checkpoint stands');
        }
      }
      log.warn({ code: err.code, err: err.message, durableOffsetBytes: cp.durableOffsetBytes }, 'transfer stopped');
      throw err;
    } finally {
      held.close();
      await handle.close().catch((e) => log.error({ err: asThinshipError(e).message }, 'closing the target failed'));
      await release().catch((e) => log.error({ err: asThinshipError(e).message }, 'releasing the target failed'));
    }
  }
}
