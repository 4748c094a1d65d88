/**
 * The receiver's transfer registry: durable checkpoints, resume, one
 * transfer per target, limits per identity, abort and expiry. rpc/server.ts
 * turns gRPC messages into the TransferBegin (BeginInfo and the call's terms)
 * and WireRecord values of record-checks.ts and errors into gRPC statuses.
 *
 * Applying reuses receiver.ts's applyMessages: records are checked
 * (record-checks.ts, over the integrity core), decompressed and checksummed
 * (decode-data.ts, on decode workers) a few records ahead, so that work
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
import { ThinshipError, abortError, asThinshipError } from '../errors.js';
import { TokenBucket } from '../stream/bandwidth.js';
import type { VolumeHandle } from '../device/volume.js';
import { applyMessages } from './receiver.js';
import { closeSync } from 'node:fs';
import { lvmTargetReportOf, targetReportOf, type TargetReport } from './target-state/report.js';
import { currentTargetIdentity, lvmIdentity, openTargetForReading, openTransferTarget, targetIdentity, type OpenedTarget } from './target.js';
import {
  commitTransferStage,
  discardTransferStage,
  openDeviceTransferStage,
  openTransferStage,
  openLvmTransferStage,
  recoverAtStart,
  transferOwner,
  type TransferStage,
} from './target-state/transfer-hooks.js';
import { dataChecksum, SHA256_BYTES } from '../stream/integrity.js';
import { DEFAULT_KEEP_SNAPSHOTS } from './target-state/lvm-target.js';
import { codeLabel, type ReceiverMetrics } from '../ops/metrics.js';
import { checkData } from './decode-data.js';
import { DecodePool } from './decode-pool.js';
import { defaultWorkerCount } from '../stream/worker-pool.js';
import { ChunkDecompressor } from '../stream/zstd.js';
import type { StreamMessage } from '../stream/messages.js';
import { CheckpointStore, checkTransferId, type TransferCheckpoint } from './checkpoint.js';
import { abortable, readAhead } from './async-iter.js';
import {
  checkBegin,
  checkRecord,
  finishRecord,
  modeOf,
  newDecodeContext,
  DEFAULT_MAX_VOLUME_BYTES,
  type CheckedRecord,
  type DataChecker,
  type Mark,
  type TransferBegin,
  type WireRecord,
} from './record-checks.js';
import { StateDirLock } from './state-lock.js';
import { BufferBudget } from './buffer-budget.js';
import { PipelineState, type PipelineSnapshot } from './pipeline-state.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { mkdir } from 'node:fs/promises';
import { authorizeTarget, ownerName, type AccessPolicy, type AllowedTarget, type ClientIdentity } from './access.js';
import type { Logger } from 'pino';

/** Largest uncompressed DATA record accepted unless configured otherwise. */
export const DEFAULT_MAX_CHUNK_BYTES = 4 * 1024 * 1024;
export const DEFAULT_CHECKPOINT_INTERVAL_BYTES = 64 * 1024 * 1024;
/** Also checkpoint after this many records (a stream of many tiny records). */
const CHECKPOINT_INTERVAL_RECORDS = 16384;

/**
 * The burst of an identity's maxBytesPerSecond bucket: one sender chunk (1 MiB,
 * the default op size). It absorbs the time the receiver itself takes between
 * two records (else that time is lost and the rate runs below the limit); with
 * the record paid for after it arrived, what arrives in any interval is at most
 * rate × time + this + one record.
 */
export const BANDWIDTH_BURST_BYTES = 1024 * 1024;
export const DEFAULT_TRANSFER_EXPIRY_MS = 24 * 3600 * 1000;
/** Records validated and decompressed ahead of the one being written. */
const DECODE_AHEAD_RECORDS = 4;
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
/** Memory all running transfers may hold at once (see maxBufferedBytes). */
export const DEFAULT_MAX_BUFFERED_BYTES = 256 * 1024 * 1024;
/** Bytes a message may carry beyond its uncompressed chunk: a zstd frame's worst case and the other fields. */
export const MESSAGE_OVERHEAD_BYTES = 64 * 1024;
/** What a message costs besides its payload, for the progress rate (a flood of empty records is no progress). */
const MESSAGE_COST_BYTES = 64;

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
  /** Prometheus counters of the receiver (ops/metrics.ts); none: not counted. */
  metrics?: ReceiverMetrics;
  /** Worker threads that decompress and checksum DATA (default 2; 0: on the main thread). */
  decodeWorkers?: number;
  /** LVM targets: received snapshots kept per target (default DEFAULT_KEEP_SNAPSHOTS). */
  keepSnapshots?: number;
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

  constructor(
    private readonly budget: BufferBudget,
    private readonly signal: AbortSignal,
  ) {}

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
  const advice = b.incremental
    ? `it no longer holds ${cp.sourceId}, the base this incremental applies to: send a full stream`
    : 'ask GetTransferState and send again from offset 0';
  // A full transfer only has to start over (RESUME_MISMATCH: a sender asks again); an incremental cannot apply.
  return new ThinshipError(
    b.incremental ? 'BASE_MISMATCH' : 'RESUME_MISMATCH',
    `target ${b.target} ${how} since transfer ${cp.transferId} wrote it (then ${cp.targetIdentity}, now ${now ?? 'missing'}): ${advice}`,
    { details: { transferId: cp.transferId, recorded: cp.targetIdentity, now } },
  );
}

export class TransferRegistry {
  readonly store: CheckpointStore;
  private readonly checkpoints = new Map<string, TransferCheckpoint>();
  private readonly sessions = new Map<string, Session>();
  private readonly o: Required<Omit<TransferRegistryOptions, 'stateDir' | 'policy' | 'log' | 'onActiveChange' | 'metrics'>>;
  /** Records received and not yet written, of every transfer (half of maxBufferedBytes). */
  readonly recordBudget: BufferBudget;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private decodePool: DecodePool | undefined;
  private lock: StateDirLock | undefined;
  /** Per identity with a maxBytesPerSecond: the token bucket all its running transfers draw from. */
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(private opts: TransferRegistryOptions) {
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
      keepSnapshots: opts.keepSnapshots ?? DEFAULT_KEEP_SNAPSHOTS,
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

  /** Records handed to the decode workers and not yet back (0 without workers). */
  get decodeQueueDepth(): number {
    return this.decodePool?.pendingJobs ?? 0;
  }

  /** Running ApplyStream calls (tests wait on this). */
  get activeCount(): number {
    return this.sessions.size;
  }

  /** Every running transfer's pipeline stage and budget share, and the record budget (serve logs it on SIGUSR2). */
  debugState(): {
    recordBudget: ReturnType<BufferBudget['snapshot']>;
    transfers: ({ transferId: string; identity: string; heldBytes: number } & PipelineSnapshot)[];
  } {
    return {
      recordBudget: this.recordBudget.snapshot(),
      transfers: [...this.sessions.values()].map((s) => ({
        transferId: s.transferId,
        identity: s.identity,
        heldBytes: s.heldBytes?.() ?? 0,
        ...s.pipeline.snapshot(),
      })),
    };
  }

  get maxChunkBytes(): number {
    return this.o.maxChunkBytes;
  }

  get policy(): AccessPolicy {
    return this.opts.policy;
  }

  /**
   * Replaces the access rules (serve's reload on SIGHUP). Calls from now on are
   * authorized by the new rules; running transfers were authorized when they
   * began and keep going, but draw from their identity's new rate limit.
   */
  setPolicy(policy: AccessPolicy): void {
    this.opts.policy = policy;
  }

  /**
   * The token bucket of an identity's maxBytesPerSecond (undefined: no limit),
   * shared by all its running transfers; a new one when the rate changed. A
   * record is paid for after it arrived (its size is known then), before the
   * next is read (BANDWIDTH_BURST_BYTES).
   */
  bandwidthBucket(identity: string): TokenBucket | undefined {
    const rate = this.opts.policy.identities.get(identity)?.maxBytesPerSecond;
    let b = this.buckets.get(identity);
    if (!rate) {
      if (b) this.buckets.delete(identity);
      return undefined;
    }
    if (!b || b.bytesPerSecond !== rate) {
      b = new TokenBucket(rate, BANDWIDTH_BURST_BYTES);
      this.buckets.set(identity, b);
    }
    return b;
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
      for (const q of listed.quarantined)
        this.opts.log.warn({ file: q.file, movedTo: q.movedTo, reason: q.reason }, 'unusable checkpoint moved to quarantine (its transfer starts over)');
      if (listed.migrated.length > 0)
        this.opts.log.info({ transfers: listed.migrated.length }, 'format-1 checkpoints migrated (checksummed, per-identity file names)');
      for (const cp of listed.checkpoints) this.checkpoints.set(keyOf(cp.identity, cp.transferId), cp);
    } catch (e) {
      await this.lock.release().catch(() => undefined);
      throw e;
    }
    if (this.o.decodeWorkers > 0) this.decodePool = new DecodePool(this.o.decodeWorkers);
    // recv-guarantees hook: staging and journals that no resumable transfer owns are rolled back.
    const resumable = [...this.checkpoints.values()].filter((c) => c.status === 'in_progress').map((c) => transferOwner(c.identity, c.transferId));
    await recoverAtStart(this.opts.policy, resumable, this.opts.stateDir, this.opts.log).catch((e) =>
      this.opts.log.error({ err: asThinshipError(e).message }, 'start-up recovery of staged targets failed'),
    );
    await this.sweep();
    const every = Math.max(1000, Math.min(60_000, Math.floor(this.o.expiryMs / 4)));
    this.sweepTimer = setInterval(() => {
      this.sweep().catch((e) => this.opts.log.error({ err: asThinshipError(e).message }, 'expiry sweep failed'));
    }, every);
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
      // recv-guarantees hook: an expired transfer's staging or journal is rolled back.
      if (cp.status === 'in_progress')
        await discardTransferStage(cp.target, cp.targetKey, transferOwner(cp.identity, cp.transferId), this.opts.stateDir, this.opts.log);
      gone.push(cp.transferId);
      this.opts.log.info(
        { transferId: cp.transferId, target: cp.target, status: cp.status, durableOffsetBytes: cp.durableOffsetBytes },
        'transfer expired and forgotten',
      );
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
      ...this.view(cp),
      status: 'in_progress',
      durableOffsetBytes: 0,
      digestState: hex(Buffer.alloc(SHA256_BYTES)),
      dataRecords: 0,
      unmapRecords: 0,
      dataBytes: 0,
      unmapBytes: 0,
    };
  }

  /**
   * GetTarget: what a target holds (target-state/report.ts), under the same
   * access rules as applying to it (authorizeTarget: PERMISSION_DENIED opens
   * nothing). An unfinished transfer of this registry on it counts as staged
   * even where nothing is on disk yet.
   */
  async targetReport(who: ClientIdentity, name: string): Promise<TargetReport> {
    const target = await authorizeTarget(this.opts.policy, who, name);
    if (target.kind === 'lvm') return lvmTargetReportOf(target.vg, target.lv, this.opts.stateDir, name);
    const fd = await openTargetForReading(target);
    if (fd === undefined) throw new ThinshipError('NOT_FOUND', `target ${name} does not exist`, { details: { target: name } });
    try {
      const r = await targetReportOf(fd, target.realPath, this.opts.stateDir, name);
      return r;
    } finally {
      closeSync(fd);
    }
  }

  /** The caller's own transfers, newest first (another identity's are not listed). */
  list(who: ClientIdentity): TransferStateView[] {
    const owner = ownerName(this.opts.policy, who.names);
    return [...this.checkpoints.values()]
      .filter((cp) => cp.identity === owner)
      .map((cp) => this.view(cp))
      .sort((a, b) => b.updatedUnixMs - a.updatedUnixMs);
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
    // recv-guarantees hook: what the transfer staged is rolled back.
    if (cp.status === 'in_progress')
      await discardTransferStage(cp.target, cp.targetKey, transferOwner(cp.identity, transferId), this.opts.stateDir, this.opts.log);
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
    for (const s of this.sessions.values())
      if (s.targetKey === targetKey && s.key !== exceptKey) return { transferId: s.transferId, identity: s.identity, checkpoint: this.checkpoints.get(s.key) };
    for (const cp of this.checkpoints.values()) {
      if (cp.status === 'in_progress' && cp.targetKey === targetKey && keyOf(cp.identity, cp.transferId) !== exceptKey)
        return { transferId: cp.transferId, identity: cp.identity, checkpoint: cp };
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
      throw new ThinshipError(
        'TRANSFER_BUSY',
        `this receiver is already running ${this.sessions.size} transfers (its limit, maxActiveTransfers ${this.o.maxActiveTransfers})`,
        { retryable: true },
      );
    }
    let mine = 0;
    for (const s of this.sessions.values()) if (s.identity === identity) mine++;
    if (mine >= this.o.maxActiveTransfersPerIdentity) {
      throw new ThinshipError(
        'TRANSFER_BUSY',
        `identity "${identity}" is already running ${mine} transfers on this receiver (its limit, maxActiveTransfersPerIdentity ${this.o.maxActiveTransfersPerIdentity})`,
        { retryable: true },
      );
    }
    if (!isNew) return;
    let stored = 0;
    for (const cp of this.checkpoints.values()) if (cp.identity === identity && cp.status === 'in_progress') stored++;
    if (stored >= this.o.maxStoredTransfersPerIdentity) {
      throw new ThinshipError(
        'TRANSFER_BUSY',
        `identity "${identity}" has ${stored} unfinished transfers stored on this receiver (its limit, maxStoredTransfersPerIdentity ${this.o.maxStoredTransfersPerIdentity}): resume or abort one (AbortTransfer), or let them expire`,
        { retryable: false },
      );
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
    const recorded = (c: TransferCheckpoint) => c.targetIdentity !== undefined && c.identity === identity && c.transferId === id;
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
      throw new ThinshipError(
        'TRANSFER_BUSY',
        `target ${begin.target} is in use by transfer ${holder.transferId} (running, or resumable: abort it with AbortTransfer${until})`,
        { details: { holder: holder.transferId } },
      );
    }
    if (cp?.targetIdentity !== undefined && cp.targetIdentity !== now) {
      // A full transfer starts over (its first checkpoint replaces this record); an incremental has lost its base.
      if (begin.incremental) throw replacedError(cp, begin, now);
      this.opts.log.info(
        { transferId: id, target: begin.target, recorded: cp.targetIdentity, now: now ?? 'missing' },
        'target replaced since the transfer wrote it: starting over',
      );
      cp = undefined;
    }
    // A transfer starting over replaces its own stored record: not a new one for the stored cap.
    this.checkCapacity(identity, !this.checkpoints.has(key));
    // The base is checked against the target's own record (target-state/: file xattrs, the state dir, LV tags), not this registry.
    if (cp?.status === 'complete')
      throw new ThinshipError(
        'RESUME_MISMATCH',
        `transfer ${id} is already complete (durable at ${cp.durableOffsetBytes}); send with a new transfer id to send it again`,
      );
    const durable = cp?.durableOffsetBytes ?? 0;
    if (begin.resumeOffsetBytes !== durable) {
      throw new ThinshipError(
        'RESUME_MISMATCH',
        `transfer ${id}: resume offset ${begin.resumeOffsetBytes} does not match the receiver's durable offset ${durable}${cp ? '' : ' (the receiver has no record of this transfer)'}; ask GetTransferState and resume from there`,
        { details: { durableOffsetBytes: durable } },
      );
    }

    const controller = new AbortController();
    let finish!: () => void;
    const session: Session = {
      key,
      transferId: id,
      targetKey: target.key,
      identity,
      controller,
      forgotten: false,
      pipeline: new PipelineState(),
      done: new Promise<void>((r) => {
        finish = r;
      }),
    };
    this.sessions.set(key, session);
    this.opts.onActiveChange?.(this.sessions.size);
    const onCallerGone = () => controller.abort(signal!.reason ?? new ThinshipError('UNAVAILABLE', 'the sender went away', { retryable: true }));
    if (signal?.aborted) onCallerGone();
    else signal?.addEventListener('abort', onCallerGone, { once: true });
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

  private checkSameTransfer(cp: TransferCheckpoint, b: TransferBegin, t: AllowedTarget): void {
    const diffs: string[] = [];
    if (cp.targetKey !== t.key) diffs.push(`target ${cp.target} vs ${b.target}`);
    if (cp.mode !== modeOf(b)) diffs.push(`mode ${cp.mode} vs ${modeOf(b)}`);
    if (cp.sourceId !== b.sourceId) diffs.push(`source ${cp.sourceId} vs ${b.sourceId}`);
    if (cp.baseId !== (b.baseId ?? '')) diffs.push(`base ${cp.baseId} vs ${b.baseId ?? ''}`);
    if (cp.volumeSizeBytes !== b.volumeSizeBytes) diffs.push(`volume size ${cp.volumeSizeBytes} vs ${b.volumeSizeBytes}`);
    if (cp.checksum !== b.checksum) diffs.push(`checksum ${cp.checksum} vs ${b.checksum}`);
    if (diffs.length > 0)
      throw new ThinshipError(
        'RESUME_MISMATCH',
        `transfer id ${cp.transferId} was begun with different parameters (${diffs.join('; ')}); use another transfer id`,
      );
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
    // lastData exists only for a transfer with checksums, made by its algorithm.
    const sum = cp.checksum === 'none' ? '' : dataChecksum(buf.subarray(0, n), cp.checksum).toString('hex');
    if (n !== l.lengthBytes || sum !== l.checksum) {
      throw new ThinshipError(
        'RESUME_MISMATCH',
        `transfer ${cp.transferId} cannot resume: the target's bytes at ${l.offsetBytes}..${l.offsetBytes + l.lengthBytes} (the last record applied before the checkpoint) are no longer what was written, so the target changed since; the transfer must start over: abort it (AbortTransfer) and send again`,
        { details: { volumeOffset: l.offsetBytes } },
      );
    }
  }

  /** Opens a file target's staging file or undo journal (target-state/): one method, so tests can watch the handle written through. */
  protected openStage(...a: Parameters<typeof openTransferStage>): ReturnType<typeof openTransferStage> {
    return openTransferStage(...a);
  }

  /** Opens a target for writing (target.ts). One method, so tests can watch the handle the registry writes through. */
  protected openTarget(...a: Parameters<typeof openTransferTarget>): ReturnType<typeof openTransferTarget> {
    return openTransferTarget(...a);
  }

  /**
   * Opens the target a transfer writes and checks it may: the same target the
   * transfer wrote so far (not replaced since), big enough, and (resuming) still
   * holding the last record applied. Any refusal closes and releases it again:
   * a refused begin holds nothing.
   */
  /**
   * Opens a transfer's target: refused if it was replaced since the transfer began or is too
   * small; a file target is checked against its record and written through a staging file or
   * undo journal (target-state/, the receiver guarantees); a resume re-reads the last applied
   * record. Returns the open target and, for files, the stage that receives the writes.
   */
  private async openTargetOfTransfer(
    begin: TransferBegin,
    target: AllowedTarget,
    existing: TransferCheckpoint | undefined,
    s: Session,
    log: Logger,
  ): Promise<OpenedTarget & { stage?: TransferStage }> {
    if (target.kind === 'lvm') return this.openLvmTargetOfTransfer(begin, target, existing, s, log);
    const opened = await this.openTarget(target, {
      volumeSizeBytes: begin.volumeSizeBytes,
      mustExist: begin.incremental
        ? 'an incremental stream applies only to a target holding its base'
        : existing
          ? 'it was removed during the transfer'
          : undefined,
    });
    const { handle, release, identity, created } = opened;
    let stage: TransferStage | undefined;
    try {
      if (existing?.targetIdentity !== undefined && identity !== existing.targetIdentity) {
        // Replaced between apply()'s look and the open: what is open now holds nothing of this transfer.
        throw replacedError(existing, begin, identity);
      }
      if (target.kind === 'path') {
        stage = await this.openStage(target, handle, created === true, begin, transferOwner(s.identity, s.transferId), !!existing, log);
      } else if (target.kind === 'device') {
        stage = await openDeviceTransferStage(target, handle, begin, transferOwner(s.identity, s.transferId), !!existing, this.opts.stateDir, log);
      }
      if (existing?.lastData) await this.checkLastData(stage?.handle ?? handle, existing);
    } catch (e) {
      await stage?.close().catch(() => undefined);
      await handle.close().catch(() => undefined);
      await release().catch(() => undefined);
      throw e;
    }
    return { ...opened, stage };
  }

  /**
   * An LVM thin LV target (target-state/lvm-stage.ts, the rules of pipe mode):
   * the stream goes to a staging LV, never to the target itself, so the target
   * is not opened here; its identity is its LV uuid (none yet when a full
   * stream creates it). A resume continues into the transfer's own staging LV.
   */
  private async openLvmTargetOfTransfer(
    begin: TransferBegin,
    target: Extract<AllowedTarget, { kind: 'lvm' }>,
    existing: TransferCheckpoint | undefined,
    s: Session,
    log: Logger,
  ): Promise<OpenedTarget & { stage: TransferStage }> {
    const { stage, targetUuid } = await openLvmTransferStage(target, begin, {
      owner: transferOwner(s.identity, s.transferId),
      transferId: s.transferId,
      resuming: !!existing,
      stateDir: this.opts.stateDir,
      keepSnapshots: this.o.keepSnapshots,
      log,
    });
    const identity = targetUuid === undefined ? undefined : lvmIdentity(targetUuid);
    try {
      if (existing?.targetIdentity !== undefined && identity !== existing.targetIdentity) throw replacedError(existing, begin, identity);
      if (existing?.lastData) await this.checkLastData(stage.handle, existing);
    } catch (e) {
      await stage.close().catch(() => undefined);
      throw e;
    }
    return { handle: stage.handle, identity: identity ?? '', release: async () => undefined, stage };
  }

  private async run(
    s: Session,
    who: ClientIdentity,
    begin: TransferBegin,
    target: AllowedTarget,
    existing: TransferCheckpoint | undefined,
    records: AsyncIterable<WireRecord>,
  ): Promise<ApplyResult> {
    const log = this.opts.log.child({ transferId: s.transferId, identity: who.name, target: begin.target });
    const now = Date.now();
    let cp: TransferCheckpoint = existing ?? {
      format: 2,
      transferId: s.transferId,
      status: 'in_progress',
      identity: s.identity,
      target: begin.target,
      targetKey: target.key,
      mode: modeOf(begin),
      sourceId: begin.sourceId,
      baseId: begin.baseId ?? '',
      volumeSizeBytes: begin.volumeSizeBytes,
      blockSizeBytes: begin.blockSizeBytes ?? 0,
      checksum: begin.checksum,
      durableOffsetBytes: 0,
      digestState: hex(Buffer.alloc(SHA256_BYTES)),
      dataRecords: 0,
      unmapRecords: 0,
      dataBytes: 0,
      unmapBytes: 0,
      createdUnixMs: now,
      updatedUnixMs: now,
    };
    const limitOf = () => this.bandwidthBucket(s.identity)?.bytesPerSecond;
    log.info(
      {
        mode: modeOf(begin),
        volumeSizeBytes: begin.volumeSizeBytes,
        resumeOffsetBytes: begin.resumeOffsetBytes,
        plannedDataBytes: begin.plannedDataBytes,
        resuming: !!existing,
        maxBytesPerSecond: limitOf(),
      },
      existing ? 'transfer resuming' : 'transfer begin',
    );
    const { handle, release, identity, stage: opened } = await this.openTargetOfTransfer(begin, target, existing, s, log);
    let stage = opened;
    const writeTo = stage?.handle ?? handle;
    // A file or device written through a stage is recorded as itself (its stage's handle is another file); an LV by its uuid.
    cp = {
      ...cp,
      targetIdentity: target.kind === 'lvm' ? identity || undefined : stage ? await targetIdentity(await handle.stat(), handle.sizeBytes) : identity,
    };
    const t0 = performance.now();
    const held = new SessionHoldings(this.recordBudget, s.controller.signal);
    let applied: Mark = {
      offsetBytes: cp.durableOffsetBytes,
      digest: Buffer.from(cp.digestState, 'hex'),
      lastData: cp.lastData,
      dataRecords: cp.dataRecords,
      unmapRecords: cp.unmapRecords,
      dataBytes: cp.dataBytes,
      unmapBytes: cp.unmapBytes,
    };
    const ctx = newDecodeContext(begin, this.o.maxChunkBytes, applied);
    let lastSaved = applied;
    const metrics = this.opts.metrics;
    if (existing) metrics?.resumes.inc();
    const save = async (m: Mark, status: TransferCheckpoint['status']) => {
      const endTimer = metrics?.checkpointSeconds.startTimer();
      cp = {
        ...cp,
        status,
        durableOffsetBytes: m.offsetBytes,
        digestState: hex(m.digest),
        dataRecords: m.dataRecords,
        unmapRecords: m.unmapRecords,
        dataBytes: m.dataBytes,
        unmapBytes: m.unmapBytes,
        updatedUnixMs: Date.now(),
      };
      if (m.lastData) cp.lastData = m.lastData;
      await this.store.save(cp);
      this.checkpoints.set(s.key, cp);
      lastSaved = m;
      endTimer?.();
      log.info({ durableOffsetBytes: m.offsetBytes, dataBytes: m.dataBytes, status }, 'checkpoint');
    };
    try {
      // The transfer (and its target) is recorded before anything is written.
      if (!existing) await save(applied, 'in_progress');
      const dz = new ChunkDecompressor();
      const pool = this.decodePool;
      const checker: DataChecker = pool ? (j) => pool.check(j) : (j) => checkData(j, dz);
      // eslint-disable-next-line @typescript-eslint/no-this-alias -- the async generators below cannot be arrow functions
      const self = this;
      // Before asking for a message: its worst case (the message, the decoder's copy, zstd's output).
      const worstBytes = 2 * (this.o.maxChunkBytes + MESSAGE_OVERHEAD_BYTES) + (begin.compression === 'zstd' ? this.o.maxChunkBytes : 0);
      const pipe = s.pipeline;
      s.heldBytes = () => held.heldBytes;
      /** DATA payload bytes of the last message, drawn from the identity's rate limit before the next is read. */
      let lastWireBytes = 0;
      const signal = s.controller.signal;
      const reserve = async () => {
        pipe.reading('record budget');
        await held.reserve(worstBytes);
        // The identity's maxBytesPerSecond: not reading paces the sender through HTTP/2 flow
        // control. Waiting here is not the sender's slowness (abortable's progress check skips it).
        const bucket = lastWireBytes > 0 ? self.bandwidthBucket(s.identity) : undefined;
        if (bucket) {
          const waitMs = bucket.reserve(lastWireBytes);
          if (waitMs > 0) {
            pipe.reading('bandwidth limit');
            await sleep(waitMs, undefined, { signal }).catch((e: unknown) => {
              throw signal.aborted ? abortError(signal) : e;
            });
            metrics?.throttledSeconds.inc(waitMs / 1000);
          }
        }
        lastWireBytes = 0;
        pipe.reading('sender');
      };
      async function* checked(): AsyncGenerator<CheckedRecord> {
        for await (const r of abortable(records, signal, self.o, wireBytes, reserve)) {
          if (r.type === 'data') lastWireBytes = r.payload.length;
          held.arrived(recordBytes(r));
          pipe.recordsReceived++;
          if (r.type === 'data') metrics?.wireBytes.inc(r.payload.length);
          const c = checkRecord(r, ctx, checker);
          pipe.reading('read-ahead full');
          yield c;
        }
        pipe.reading('ended');
      }
      async function* messages(): AsyncGenerator<StreamMessage> {
        // The begin as the gRPC edge mapped it (BeginInfo; the call's terms ride along unread).
        yield { type: 'begin', info: begin };
        // Up to DECODE_AHEAD_RECORDS records are checked and decoding (on the workers) while one is written.
        pipe.writing('next record');
        for await (const c of readAhead(checked(), DECODE_AHEAD_RECORDS)) {
          pipe.writing('decode');
          const d = await finishRecord(c, ctx);
          pipe.writing('write');
          yield d.msg;
          // Written (applyMessages awaits each write before asking for more): its buffer may be reused.
          if (d.msg.type === 'data') pool?.recycle(d.msg.data);
          held.applied();
          pipe.recordsApplied++;
          pipe.writing('next record');
          // Back here, applyMessages has applied d (it awaits each write before asking for more).
          if (d.msg.type === 'end') {
            endSeen = performance.now();
            continue;
          }
          metrics?.records.inc({ kind: d.msg.type === 'unmap' ? 'unmap' : 'data' });
          applied = d.mark;
          const sinceBytes = applied.dataBytes - lastSaved.dataBytes;
          const sinceRecords = applied.dataRecords + applied.unmapRecords - lastSaved.dataRecords - lastSaved.unmapRecords;
          if (sinceBytes >= self.o.checkpointIntervalBytes || sinceRecords >= CHECKPOINT_INTERVAL_RECORDS) {
            pipe.writing('checkpoint');
            await writeTo.flush();
            await save(applied, 'in_progress');
            pipe.writing('next record');
          }
        }
        pipe.writing('ended');
      }
      let endSeen = 0;
      const summary = await applyMessages(messages(), writeTo, { resumeFromBytes: begin.resumeOffsetBytes });
      if (stage) {
        // recv-guarantees hook: the validated End commits the staged snapshot onto the target.
        await commitTransferStage(stage, begin, s.transferId, begin.checksum !== 'none' ? ctx.ledger.digest : undefined);
        stage = undefined;
        cp = { ...cp, targetIdentity: await currentTargetIdentity(target) };
      }
      // applyMessages flushed the target after the end record (and zeroed a full stream's tail).
      const end: Mark = { offsetBytes: begin.volumeSizeBytes, lastData: ctx.lastData, ...ctx.ledger.snapshot() };
      await save(end, 'complete');
      await this.forgetSuperseded(cp);
      await this.forgetOldestCompleted(cp.identity);
      const secs = (performance.now() - t0) / 1000;
      const sessionData = ctx.ledger.counts.dataBytes - (existing?.dataBytes ?? 0);
      log.info(
        {
          seconds: Number(secs.toFixed(3)),
          dataBytes: sessionData,
          bytesWritten: summary.bytesWritten,
          bytesDiscarded: summary.bytesDiscarded,
          mibPerSecond: Number((sessionData / 1048576 / Math.max(secs, 1e-9)).toFixed(1)),
          maxBytesPerSecond: limitOf(),
          digest: hex(end.digest),
        },
        'transfer complete',
      );
      if (metrics) {
        if (endSeen > 0) metrics.commitSeconds.observe((performance.now() - endSeen) / 1000);
        metrics.writtenBytes.inc(summary.bytesWritten);
        metrics.discardedBytes.inc(summary.bytesDiscarded + summary.gapBytesZeroed);
        metrics.transfers.inc({ outcome: 'complete', code: '' });
      }
      return {
        transferId: s.transferId,
        dataRecordsApplied: ctx.ledger.counts.dataRecords - (existing?.dataRecords ?? 0),
        unmapRecordsApplied: ctx.ledger.counts.unmapRecords - (existing?.unmapRecords ?? 0),
        bytesWritten: summary.bytesWritten,
        bytesDiscarded: summary.bytesDiscarded + summary.gapBytesZeroed,
        digest: begin.checksum !== 'none' ? end.digest : Buffer.alloc(0),
        state: this.view(cp),
      };
    } catch (e) {
      const err = asThinshipError(e);
      // Keep what was applied: flush, then checkpoint at the last applied record, so a resume re-sends nothing of it.
      if (!s.forgotten && applied.offsetBytes > lastSaved.offsetBytes) {
        try {
          await writeTo.flush();
          await save(applied, 'in_progress');
        } catch (e2) {
          log.error({ err: asThinshipError(e2).message }, 'could not checkpoint after the error; the last checkpoint stands');
        }
      }
      log.warn({ code: err.code, err: err.message, durableOffsetBytes: cp.durableOffsetBytes }, 'transfer stopped');
      metrics?.transfers.inc({ outcome: err.code === 'TRANSFER_ABORTED' ? 'aborted' : err.retryable ? 'checkpointed' : 'failed', code: codeLabel(err.code) });
      throw err;
    } finally {
      held.close();
      // A resumable transfer keeps its staging or journal (AbortTransfer and expiry roll it back).
      await stage?.close().catch(() => undefined);
      await handle.close().catch((e) => log.error({ err: asThinshipError(e).message }, 'closing the target failed'));
      await release().catch((e) => log.error({ err: asThinshipError(e).message }, 'releasing the target failed'));
    }
  }
}
