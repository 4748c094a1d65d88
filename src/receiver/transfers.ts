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
import { applyMessages } from './receiver.js';
import { currentTargetIdentity, openTransferTarget } from './target.js';
import { StreamDigest, dataChecksum, SHA256_BYTES } from '../stream/digest.js';
import { checkData, type DataCheck, type DataChecked } from './decode-data.js';
import { DecodePool } from './decode-pool.js';
import { defaultWorkerCount } from '../stream/worker-pool.js';
import { ChunkDecompressor } from '../stream/zstd.js';
import type { StreamMessage } from '../stream/messages.js';
import { CheckpointStore, checkTransferId, type TransferCheckpoint, type TransferMode } from './checkpoint.js';
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
  | { type: 'data'; offsetBytes: number; lengthBytes: number; payload: Buffer; encoding: 'raw' | 'zstd' | 'zero'; checksum: Buffer }
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
  /** Worker threads that decompress and checksum DATA (default 2; 0: on the main thread). */
  decodeWorkers?: number;
}

/** Running totals after a record: what a checkpoint at that record records. */
interface Mark {
  offsetBytes: number;
  digest: Buffer;
  dataRecords: number;
  unmapRecords: number;
  dataBytes: number;
  unmapBytes: number;
}

interface Session {
  transferId: string;
  targetKey: string;
  identity: string;
  controller: AbortController;
  /** Set by AbortTransfer: the checkpoint is being deleted, do not save one. */
  forgotten: boolean;
  done: Promise<void>;
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

/** Iterates src until the signal fires, then throws (even while a next() is pending on a silent peer). */
async function* abortable<T>(src: AsyncIterable<T>, signal: AbortSignal): AsyncGenerator<T> {
  const it = src[Symbol.asyncIterator]();
  try {
    for (;;) {
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
      let r: IteratorResult<T>;
      try {
        r = await Promise.race([it.next(), aborted]);
      } finally {
        signal.removeEventListener('abort', onAbort!);
      }
      if (r.done) return;
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
  counts: Omit<Mark, 'offsetBytes' | 'digest'>;
  ended: boolean;
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
  counts: Omit<Mark, 'offsetBytes' | 'digest'>;
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
      const work = checker({ offsetBytes: off, lengthBytes: len, payload: r.payload, encoding: r.encoding, checksum: b.checksum === 'sha256' ? r.checksum : undefined });
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
    if (sha) ctx.digest.addData(c.offsetBytes, c.lengthBytes, done!.sum!);
    msg = { type: 'data', offsetBytes: c.offsetBytes, data: done!.data };
  }
  return { msg, mark: { offsetBytes: c.cursorBytes, digest: ctx.digest.state, ...c.counts } };
}

export async function finishRecord(c: CheckedRecord, ctx: DecodeContext): Promise<DecodedRecord> {
  return finishWith(c, ctx, c.work === undefined ? undefined : await c.work);
}

/** Checks and finishes one record on the calling thread (unit tests, and receivers without decode workers). */
export function decodeRecord(r: WireRecord, ctx: DecodeContext, dz: ChunkDecompressor): DecodedRecord {
  const c = checkRecord(r, ctx, (j) => checkData(j, dz));
  return finishWith(c, ctx, c.work as DataChecked | undefined);
}

/** Checks the fields of a Begin that do not depend on the receiver's state. */
export function checkBegin(b: TransferBegin, o: { requireChecksum: boolean }): void {
  checkTransferId(b.transferId);
  const bad = (why: string) => new ThinshipError('BAD_STREAM', `begin of transfer ${b.transferId}: ${why}`);
  if (!Number.isSafeInteger(b.volumeSizeBytes) || b.volumeSizeBytes <= 0) throw bad(`volume size ${b.volumeSizeBytes} must be positive`);
  if (!Number.isSafeInteger(b.resumeOffsetBytes) || b.resumeOffsetBytes < 0 || b.resumeOffsetBytes > b.volumeSizeBytes) throw bad(`resume offset ${b.resumeOffsetBytes} is outside the volume`);
  if (b.sourceId === '') throw bad('source_id is empty');
  if (b.mode === 'incremental' && b.baseId === '') throw bad('an incremental transfer needs base_id');
  if (b.mode === 'full' && b.baseId !== '') throw bad('a full transfer must not name a base');
  if (b.checksum === 'none' && o.requireChecksum) throw bad('this receiver requires checksums (CHECKSUM_ALGORITHM_SHA256)');
}

function hex(b: Buffer): string {
  return b.toString('hex');
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
  private readonly o: Required<Omit<TransferRegistryOptions, 'stateDir' | 'policy' | 'log'>>;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private decodePool: DecodePool | undefined;

  constructor(private readonly opts: TransferRegistryOptions) {
    this.store = new CheckpointStore(opts.stateDir);
    this.o = {
      checkpointIntervalBytes: opts.checkpointIntervalBytes ?? DEFAULT_CHECKPOINT_INTERVAL_BYTES,
      maxChunkBytes: opts.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES,
      expiryMs: opts.expiryMs ?? DEFAULT_TRANSFER_EXPIRY_MS,
      requireChecksum: opts.requireChecksum ?? true,
      maxActiveTransfers: opts.maxActiveTransfers ?? 16,
      decodeWorkers: opts.decodeWorkers ?? defaultWorkerCount(),
    };
  }

  get maxChunkBytes(): number {
    return this.o.maxChunkBytes;
  }

  get policy(): AccessPolicy {
    return this.opts.policy;
  }

  /** Loads the checkpoints left by an earlier run, forgets expired ones, and starts the expiry timer. */
  async start(): Promise<void> {
    await this.store.init();
    for (const cp of await this.store.list()) this.checkpoints.set(cp.transferId, cp);
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
      if (this.sessions.has(cp.transferId) || cp.updatedUnixMs + this.o.expiryMs > now) continue;
      this.checkpoints.delete(cp.transferId);
      await this.store.remove(cp.transferId);
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
  }

  private view(cp: TransferCheckpoint): TransferStateView {
    return { ...cp, active: this.sessions.has(cp.transferId), expiresUnixMs: cp.updatedUnixMs + this.o.expiryMs };
  }

  private owned(who: ClientIdentity, transferId: string): TransferCheckpoint {
    checkTransferId(transferId);
    const cp = this.checkpoints.get(transferId);
    if (!cp) throw new ThinshipError('NOT_FOUND', `no transfer ${transferId} on this receiver (never begun, finished and expired, or aborted)`);
    if (cp.identity !== ownerName(this.opts.policy, who.names)) throw new ThinshipError('PERMISSION_DENIED', `transfer ${transferId} belongs to another client identity`);
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
    if (cp.targetIdentity === undefined || this.sessions.has(transferId)) return this.view(cp);
    const target = await authorizeTarget(this.opts.policy, who, cp.target).catch(() => undefined);
    if (!target || (await currentTargetIdentity(target)) === cp.targetIdentity) return this.view(cp);
    return {
      ...this.view(cp), status: 'in_progress', durableOffsetBytes: 0, digestState: hex(Buffer.alloc(SHA256_BYTES)),
      dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0,
    };
  }

  async abort(who: ClientIdentity, transferId: string, reason: string): Promise<{ stopped: boolean; durableOffsetBytes: number }> {
    const cp = this.owned(who, transferId);
    const s = this.sessions.get(transferId);
    if (s) {
      s.forgotten = true;
      s.controller.abort(new ThinshipError('ABORTED', `transfer ${transferId} was aborted by AbortTransfer${reason ? ` (${reason})` : ''}`));
      await s.done;
    }
    this.checkpoints.delete(transferId);
    await this.store.remove(transferId);
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
      if (cp.transferId === done.transferId || cp.targetKey !== done.targetKey || cp.status !== 'complete') continue;
      this.checkpoints.delete(cp.transferId);
      await this.store.remove(cp.transferId);
    }
  }

  /** Who holds a target: a running session or an unfinished, unexpired checkpoint of another transfer. */
  private holderOf(targetKey: string, except: string): string | undefined {
    for (const s of this.sessions.values()) if (s.targetKey === targetKey && s.transferId !== except) return s.transferId;
    for (const cp of this.checkpoints.values()) if (cp.status === 'in_progress' && cp.targetKey === targetKey && cp.transferId !== except) return cp.transferId;
    return undefined;
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
    // The records are checked against the target itself (identity recorded by run()).
    const recorded = (c: TransferCheckpoint) => c.targetIdentity !== undefined && (c.transferId === id || (begin.mode === 'incremental' && c.targetKey === target.key && c.status === 'complete'));
    const now = [...this.checkpoints.values()].some(recorded) ? await currentTargetIdentity(target) : undefined;

    // Claim the transfer and its target. Everything between the awaits below is synchronous.
    let cp: TransferCheckpoint | undefined;
    for (let tries = 0; ; tries++) {
      cp = this.checkpoints.get(id);
      if (cp && cp.identity !== identity) throw new ThinshipError('PERMISSION_DENIED', `transfer ${id} belongs to another client identity`);
      if (cp) this.checkSameTransfer(cp, begin, target);
      const old = this.sessions.get(id);
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
    const holder = this.holderOf(target.key, id);
    if (holder) {
      const h = this.checkpoints.get(holder);
      const until = h ? `; it expires at ${new Date(h.updatedUnixMs + this.o.expiryMs).toISOString()} unless resumed` : '';
      throw new ThinshipError('TRANSFER_BUSY', `target ${begin.target} is in use by transfer ${holder} (running, or resumable: abort it with AbortTransfer${until})`, { details: { holder } });
    }
    if (this.sessions.size >= this.o.maxActiveTransfers) throw new ThinshipError('TRANSFER_BUSY', `this receiver is already running ${this.sessions.size} transfers (its limit)`, { retryable: true });
    if (cp?.targetIdentity !== undefined && cp.targetIdentity !== now) {
      // A full transfer starts over (its first checkpoint replaces this record); an incremental has lost its base.
      if (begin.mode === 'incremental') throw replacedError(cp, begin, now);
      this.opts.log.info({ transferId: id, target: begin.target, recorded: cp.targetIdentity, now: now ?? 'missing' }, 'target replaced since the transfer wrote it: starting over');
      cp = undefined;
    }
    if (!cp && begin.mode === 'incremental') this.checkBase(begin, target.key, now);
    if (cp?.status === 'complete') throw new ThinshipError('RESUME_MISMATCH', `transfer ${id} is already complete (durable at ${cp.durableOffsetBytes}); send with a new transfer id to send it again`);
    const durable = cp?.durableOffsetBytes ?? 0;
    if (begin.resumeOffsetBytes !== durable) {
      throw new ThinshipError('RESUME_MISMATCH', `transfer ${id}: resume offset ${begin.resumeOffsetBytes} does not match the receiver's durable offset ${durable}${cp ? '' : ' (the receiver has no record of this transfer)'}; ask GetTransferState and resume from there`, { details: { durableOffsetBytes: durable } });
    }

    const controller = new AbortController();
    let finish!: () => void;
    const session: Session = { transferId: id, targetKey: target.key, identity, controller, forgotten: false, done: new Promise<void>((r) => { finish = r; }) };
    this.sessions.set(id, session);
    const onCallerGone = () => controller.abort(signal!.reason ?? new ThinshipError('UNAVAILABLE', 'the sender went away', { retryable: true }));
    if (signal?.aborted) onCallerGone(); else signal?.addEventListener('abort', onCallerGone, { once: true });
    try {
      return await this.run(session, who, begin, target, cp, records);
    } finally {
      signal?.removeEventListener('abort', onCallerGone);
      this.sessions.delete(id);
      finish();
    }
  }

  /**
   * ZFS's rule: an incremental applies only onto its base. The receiver knows
   * what a target holds from the last transfer it completed there; a target it
   * has no record of (seeded by pipe mode, or by hand) is taken on trust.
   */
  private checkBase(b: TransferBegin, targetKey: string, now: string | undefined): void {
    let last: TransferCheckpoint | undefined;
    for (const cp of this.checkpoints.values()) {
      if (cp.targetKey === targetKey && cp.status === 'complete' && (!last || cp.updatedUnixMs > last.updatedUnixMs)) last = cp;
    }
    if (last?.targetIdentity !== undefined && last.targetIdentity !== now) throw replacedError(last, b, now);
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

  private async run(s: Session, who: ClientIdentity, begin: TransferBegin, target: AllowedTarget, existing: TransferCheckpoint | undefined, records: AsyncIterable<WireRecord>): Promise<ApplyResult> {
    const log = this.opts.log.child({ transferId: s.transferId, identity: who.name, target: begin.target });
    const now = Date.now();
    let cp: TransferCheckpoint = existing ?? {
      format: 1, transferId: s.transferId, status: 'in_progress', identity: s.identity, target: begin.target, targetKey: target.key,
      mode: begin.mode, sourceId: begin.sourceId, baseId: begin.baseId, volumeSizeBytes: begin.volumeSizeBytes, blockSizeBytes: begin.blockSizeBytes,
      checksum: begin.checksum, durableOffsetBytes: 0, digestState: hex(Buffer.alloc(SHA256_BYTES)),
      dataRecords: 0, unmapRecords: 0, dataBytes: 0, unmapBytes: 0, createdUnixMs: now, updatedUnixMs: now,
    };
    log.info({ mode: begin.mode, volumeSizeBytes: begin.volumeSizeBytes, resumeOffsetBytes: begin.resumeOffsetBytes, plannedDataBytes: begin.plannedDataBytes, resuming: !!existing }, existing ? 'transfer resuming' : 'transfer begin');
    const { handle, release, identity } = await openTransferTarget(target, {
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
    const t0 = performance.now();
    const ctx: DecodeContext = {
      begin, maxChunkBytes: this.o.maxChunkBytes, cursorBytes: cp.durableOffsetBytes,
      digest: new StreamDigest(Buffer.from(cp.digestState, 'hex')),
      counts: { dataRecords: cp.dataRecords, unmapRecords: cp.unmapRecords, dataBytes: cp.dataBytes, unmapBytes: cp.unmapBytes },
      ended: false,
    };
    let applied: Mark = { offsetBytes: cp.durableOffsetBytes, digest: ctx.digest.state, ...ctx.counts };
    let lastSaved = applied;
    const save = async (m: Mark, status: TransferCheckpoint['status']) => {
      cp = { ...cp, status, durableOffsetBytes: m.offsetBytes, digestState: hex(m.digest), dataRecords: m.dataRecords, unmapRecords: m.unmapRecords, dataBytes: m.dataBytes, unmapBytes: m.unmapBytes, updatedUnixMs: Date.now() };
      await this.store.save(cp);
      this.checkpoints.set(cp.transferId, cp);
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
      async function* checked(): AsyncGenerator<CheckedRecord> {
        for await (const r of abortable(records, s.controller.signal)) yield checkRecord(r, ctx, checker);
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
        for await (const c of readAhead(checked(), DECODE_AHEAD_RECORDS)) {
          const d = await finishRecord(c, ctx);
          yield d.msg;
          // Back here, applyMessages has applied d (it awaits each write before asking for more).
          if (d.msg.type === 'end') continue;
          applied = d.mark;
          const sinceBytes = applied.dataBytes - lastSaved.dataBytes;
          const sinceRecords = applied.dataRecords + applied.unmapRecords - lastSaved.dataRecords - lastSaved.unmapRecords;
          if (sinceBytes >= self.o.checkpointIntervalBytes || sinceRecords >= CHECKPOINT_INTERVAL_RECORDS) {
            await handle.flush();
            await save(applied, 'in_progress');
          }
        }
      }
      const summary = await applyMessages(messages(), handle, { resumeFromBytes: begin.resumeOffsetBytes });
      // applyMessages flushed the target after the end record (and zeroed a full stream's tail).
      const end: Mark = { offsetBytes: begin.volumeSizeBytes, digest: ctx.digest.state, ...ctx.counts };
      await save(end, 'complete');
      await this.forgetSuperseded(cp);
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
      await handle.close().catch((e) => log.error({ err: asThinshipError(e).message }, 'closing the target failed'));
      await release().catch((e) => log.error({ err: asThinshipError(e).message }, 'releasing the target failed'));
    }
  }
}
