/**
 * Plans: what a send must read and transmit (data) and what the receiver must
 * discard (unmap), as byte ranges of the volume in increasing offset order.
 *
 * Built while thin_dump / thin_delta is still printing: ranges are coalesced
 * (adjacent ranges of the same kind merge, whatever XML elements they came
 * from), converted from pool blocks to bytes, counted, and written to a spool
 * file as runs (16 bytes each); ops are produced by splitting the runs at
 * maxOpBytes each time the plan is iterated. So memory stays constant, the
 * totals are known before the first op is read, and the metadata snapshot can
 * be released before any data moves.
 */
import type { Readable } from 'node:stream';
import { ThinshipError } from '../errors.js';
import { SECTOR_BYTES, type DeltaRange, type Mapping, type PlanOp, type PlanTotals, type Superblock, type ThinDevice } from './model.js';
import { RecordSpool, MappingSpool } from './spool.js';
import { parseThinDelta, type DeltaResult, type DeltaSink } from './xml/delta.js';
import { parseThinDump, type DumpResult, type DumpSink } from './xml/dump.js';

/** Largest op by default: 1 MiB (chunks of 256 KiB to 1 MiB measured best on the wire). */
export const DEFAULT_MAX_OP_BYTES = 1024 * 1024;
/** Upper bound for maxOpBytes: ops are buffered whole by readers and senders. */
export const MAX_OP_BYTES_LIMIT = 1024 * 1024 * 1024;
/** Ops per batch yielded by Plan.batches(). */
export const PLAN_BATCH_OPS = 4096;

export type RunKind = PlanOp['kind'];

export interface Plan {
  /** Known before iterating. */
  readonly totals: PlanTotals;
  /** The ops in increasing offset order; may be iterated any number of times until close(). */
  batches(): AsyncIterable<PlanOp[]>;
  /** Frees the spool. Idempotent. */
  close(): Promise<void>;
}

/** Checks maxOpBytes (default DEFAULT_MAX_OP_BYTES): a positive multiple of 512 up to MAX_OP_BYTES_LIMIT. */
export function checkMaxOpBytes(maxOpBytes: number | undefined): number {
  const n = maxOpBytes ?? DEFAULT_MAX_OP_BYTES;
  if (!Number.isSafeInteger(n) || n <= 0 || n % SECTOR_BYTES !== 0 || n > MAX_OP_BYTES_LIMIT) {
    throw new ThinshipError('USAGE', `maxOpBytes must be a positive multiple of ${SECTOR_BYTES} up to ${MAX_OP_BYTES_LIMIT}, got ${maxOpBytes}`);
  }
  return n;
}

function checkVolumeSize(v: number | undefined): number | undefined {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
    throw new ThinshipError('USAGE', `volumeSizeBytes must be a non-negative integer, got ${v}`);
  }
  return v;
}

/**
 * A volume size the user gave (`flag`) that ends before the last mapped block
 * would cut the volume short without a word: refused, naming the last mapping's
 * end. A size inside the last block is a volume that ends inside its last pool
 * block, and is fine.
 */
function refuseCutVolume(flag: string | undefined, volumeSizeBytes: number | undefined, mappedEndBytes: number, blockSizeBytes: number, what: string): void {
  if (flag === undefined || volumeSizeBytes === undefined || mappedEndBytes - blockSizeBytes < volumeSizeBytes) return;
  throw new ThinshipError(
    'USAGE',
    `${flag} ${volumeSizeBytes} is smaller than the end of the last mapping of ${what} (${mappedEndBytes} bytes, block ${mappedEndBytes / blockSizeBytes - 1}): the send would cut the volume short; give at least ${mappedEndBytes}, or leave ${flag} out (the default is that end)`,
    { details: { volumeSizeBytes, mappedEndBytes } },
  );
}

/**
 * Merges adjacent block ranges of the same kind (pure; drives tests too).
 * Input must come in increasing, non-overlapping order; each finished run is
 * passed to `emit` once the next range shows it cannot grow any more.
 */
export class Coalescer {
  private kind: RunKind | undefined;
  private beginBlock = 0;
  private lengthBlocks = 0;
  /** End of everything seen so far, for the order check. */
  private endBlock = 0;

  constructor(private readonly emit: (kind: RunKind, beginBlock: number, lengthBlocks: number) => void) {}

  push(kind: RunKind, beginBlock: number, lengthBlocks: number): void {
    if (beginBlock < this.endBlock) {
      throw new ThinshipError('BAD_METADATA', `ranges out of order: block ${beginBlock} comes after a range that ends at block ${this.endBlock}`);
    }
    if (lengthBlocks <= 0) return;
    this.endBlock = beginBlock + lengthBlocks;
    if (kind === this.kind && beginBlock === this.beginBlock + this.lengthBlocks) {
      this.lengthBlocks += lengthBlocks;
      return;
    }
    if (this.kind !== undefined) this.emit(this.kind, this.beginBlock, this.lengthBlocks);
    this.kind = kind;
    this.beginBlock = beginBlock;
    this.lengthBlocks = lengthBlocks;
  }

  /** A range that is not planned (`same`): only checked for order; it separates runs anyway. */
  skip(beginBlock: number, lengthBlocks: number): void {
    if (beginBlock < this.endBlock) {
      throw new ThinshipError('BAD_METADATA', `ranges out of order: block ${beginBlock} comes after a range that ends at block ${this.endBlock}`);
    }
    this.endBlock = beginBlock + lengthBlocks;
  }

  /** Emits the last run. */
  finish(): void {
    if (this.kind !== undefined) this.emit(this.kind, this.beginBlock, this.lengthBlocks);
    this.kind = undefined;
  }
}

/** Splits one run into ops of at most maxOpBytes, appended to `out` (pure). */
export function splitRun(kind: RunKind, offsetBytes: number, lengthBytes: number, maxOpBytes: number, out: PlanOp[]): void {
  for (let o = 0; o < lengthBytes; o += maxOpBytes) {
    out.push({ kind, offsetBytes: offsetBytes + o, lengthBytes: Math.min(maxOpBytes, lengthBytes - o) });
  }
}

/**
 * Turns coalesced block runs into byte runs: converts units, checks them
 * against the volume size, counts the totals, and hands each run on as
 * (offsetBytes, lengthBytes, kind).
 */
class RunCounter {
  dataBytes = 0;
  unmapBytes = 0;
  dataOps = 0;
  unmapOps = 0;
  /** End of the last run, in bytes. */
  endBytes = 0;

  constructor(
    readonly blockSizeBytes: number,
    private readonly maxOpBytes: number,
    private readonly volumeSizeBytes: number | undefined,
    private readonly out: (kind: RunKind, offsetBytes: number, lengthBytes: number) => void,
    /** The size came from the user (this flag): a range past it is left to refuseCutVolume, not BAD_METADATA. */
    private readonly sizeFlag?: string,
  ) {}

  run = (kind: RunKind, beginBlock: number, lengthBlocks: number): void => {
    const offsetBytes = beginBlock * this.blockSizeBytes;
    let lengthBytes = lengthBlocks * this.blockSizeBytes;
    if (!Number.isSafeInteger(offsetBytes + lengthBytes)) {
      throw new ThinshipError('BAD_METADATA', `range at block ${beginBlock} (+${lengthBlocks}) is beyond the largest byte offset this program handles`);
    }
    const vol = this.volumeSizeBytes;
    if (vol !== undefined && offsetBytes + lengthBytes > vol) {
      if (offsetBytes >= vol && this.sizeFlag !== undefined) return; // the caller refuses the size once the last mapping is known
      if (offsetBytes >= vol) {
        throw new ThinshipError(
          'BAD_METADATA',
          `${kind} range at block ${beginBlock} (byte offset ${offsetBytes}) is beyond the end of the volume (${vol} bytes)`,
          { details: { beginBlock, lengthBlocks, volumeSizeBytes: vol } },
        );
      }
      // The volume ends inside its last pool block: the part past the end is not volume data.
      lengthBytes = vol - offsetBytes;
    }
    const ops = Math.ceil(lengthBytes / this.maxOpBytes);
    if (kind === 'data') {
      this.dataBytes += lengthBytes;
      this.dataOps += ops;
    } else {
      this.unmapBytes += lengthBytes;
      this.unmapOps += ops;
    }
    this.endBytes = offsetBytes + lengthBytes;
    this.out(kind, offsetBytes, lengthBytes);
  };

  totals(volumeSizeBytes: number): PlanTotals {
    return {
      dataBytes: this.dataBytes,
      unmapBytes: this.unmapBytes,
      dataOps: this.dataOps,
      unmapOps: this.unmapOps,
      volumeSizeBytes,
      blockSizeBytes: this.blockSizeBytes,
    };
  }
}

export interface PlanRange {
  kind: RunKind;
  beginBlock: number;
  lengthBlocks: number;
}

/**
 * The whole pipeline in memory, for small inputs and tests: coalesce, convert,
 * check against the volume size, split. volumeSizeBytes defaults to the end of
 * the last range.
 */
export function planOps(
  ranges: Iterable<PlanRange>,
  opts: { blockSizeBytes: number; maxOpBytes?: number; volumeSizeBytes?: number },
): { ops: PlanOp[]; totals: PlanTotals } {
  const maxOpBytes = checkMaxOpBytes(opts.maxOpBytes);
  const ops: PlanOp[] = [];
  const counter = new RunCounter(opts.blockSizeBytes, maxOpBytes, checkVolumeSize(opts.volumeSizeBytes), (k, o, l) => splitRun(k, o, l, maxOpBytes, ops));
  const c = new Coalescer(counter.run);
  for (const r of ranges) c.push(r.kind, r.beginBlock, r.lengthBlocks);
  c.finish();
  return { ops, totals: counter.totals(opts.volumeSizeBytes ?? counter.endBytes) };
}

/** A plan whose runs live in a spool: (offsetBytes, ±lengthBytes) records, negative length = unmap. */
class SpooledPlan implements Plan {
  private closed = false;

  constructor(
    readonly totals: PlanTotals,
    private readonly spool: RecordSpool,
    private readonly maxOpBytes: number,
  ) {}

  async *batches(): AsyncGenerator<PlanOp[]> {
    if (this.closed) throw new ThinshipError('INTERNAL', 'plan used after close()');
    const max = this.maxOpBytes;
    let batch: PlanOp[] = [];
    for await (const chunk of this.spool.chunks()) {
      for (let i = 0; i < chunk.length; i += 2) {
        const offsetBytes = chunk[i]!;
        const signed = chunk[i + 1]!;
        const kind: RunKind = signed < 0 ? 'unmap' : 'data';
        const lengthBytes = Math.abs(signed);
        for (let o = 0; o < lengthBytes; o += max) {
          batch.push({ kind, offsetBytes: offsetBytes + o, lengthBytes: Math.min(max, lengthBytes - o) });
          if (batch.length >= PLAN_BATCH_OPS) {
            yield batch;
            batch = [];
          }
        }
      }
    }
    if (batch.length > 0) yield batch;
  }

  close(): Promise<void> {
    this.closed = true;
    return this.spool.close();
  }
}

/**
 * Stops a flowing input from losing data while the spools are created: execa
 * resumes (and so discards) an unbuffered stdout nobody reads within one
 * setImmediate. Paused, it waits in the pipe until the parser reads it.
 */
function holdInput(input: Readable): void {
  if (input.readableFlowing !== false) input.pause();
}

const spoolRun =
  (spool: RecordSpool) =>
  (kind: RunKind, offsetBytes: number, lengthBytes: number): void => {
    spool.append2(offsetBytes, kind === 'data' ? lengthBytes : -lengthBytes);
  };

export interface FullPlanOptions {
  devId: number;
  /** Volume size (from lvs). When not given, the end of the device's last mapping. Ranges beyond it are BAD_METADATA. */
  volumeSizeBytes?: number;
  maxOpBytes?: number;
  /** Parent directory for spool files (default os.tmpdir()). */
  spoolDir?: string;
  /** Also keep the device's mappings, for reading an offline pool's data file. */
  mappingSpool?: boolean;
  /** The flag volumeSizeBytes came from (e.g. "--volume-size"): a size that cuts mapped blocks is then refused as USAGE. */
  volumeSizeFlag?: string;
}

export interface FullPlanResult {
  plan: Plan;
  superblock: Superblock;
  device: ThinDevice;
  /** Present when asked for; the caller closes it. */
  mappings?: MappingSpool;
}

/**
 * A full send of device `devId` from thin_dump output: every mapped range
 * becomes a `data` op. The dump may hold other devices (ignored). A dump without
 * the device (what `thin_dump --dev-id` prints for an unknown id) is NOT_FOUND.
 */
export async function buildFullPlan(dump: Readable, opts: FullPlanOptions): Promise<FullPlanResult> {
  holdInput(dump);
  return buildFullPlanFrom((sink) => parseThinDump(dump, sink), opts);
}

/**
 * What buildFullPlanFrom hands its source: a DumpSink, and for a source that
 * can give only which blocks are mapped (the native reader), onMappedRuns,
 * to be used instead of onMappings when needsDataBlocks is false (the plan
 * does not keep the mappings): a full plan's ops depend only on the mapped
 * blocks, and handing over runs of consecutive blocks instead of one Mapping
 * per thin_dump element is most of the cost of a native full plan.
 */
export interface FullPlanSink extends DumpSink {
  /** True when the source must call onMappings (the plan also keeps each mapping's data block). */
  readonly needsDataBlocks: boolean;
  /** Device devId's mapped blocks as runs in increasing order: pairs[2j] first block, pairs[2j + 1] length, for j < count. */
  onMappedRuns(devId: number, pairs: Float64Array, count: number): void | Promise<void>;
}

/** What feeds a plan: thin_dump's XML parser, or the native metadata reader (thin/metadata/), calling the same sink. */
export type DumpSource = (sink: FullPlanSink) => Promise<DumpResult>;
/**
 * A native delta skips subtrees both devices share without reading them, so
 * its ranges may end before the last mapped block: it says where they end.
 */
/**
 * extentBlocks: where either device's last mapping ends; snapEndBlocks: where the
 * snapshot's (right device's) last mapping ends. A source that skips shared
 * subtrees (the native walk) sees neither in its ranges and says them here.
 */
export type DeltaSource = (sink: DeltaPlanSink) => Promise<DeltaResult & { extentBlocks?: number; snapEndBlocks?: number }>;

/** The kind of an unmap run in onPlanRuns' triples (a data run's is 0). */
export const PLAN_RUN_UNMAP = 1;

/**
 * What buildDeltaPlanFrom hands its source: a DeltaSink, and for a source
 * that diffs and merges itself (the addon's delta walk), onPlanRuns: plan runs
 * as numbers in a typed array, no object per range.
 */
export interface DeltaPlanSink extends DeltaSink {
  /**
   * Runs in increasing, non-overlapping order: runs[3j] first block, runs[3j + 1] length, runs[3j + 2]
   * 0 for data (mapped in the snapshot, not as in the base) or PLAN_RUN_UNMAP (mapped only in the base), j < count.
   */
  onPlanRuns(runs: Float64Array, count: number): void | Promise<void>;
}

/** buildFullPlan from any source of the dump's typed model. */
export async function buildFullPlanFrom(source: DumpSource, opts: FullPlanOptions): Promise<FullPlanResult> {
  const maxOpBytes = checkMaxOpBytes(opts.maxOpBytes);
  const volumeSizeBytes = checkVolumeSize(opts.volumeSizeBytes);
  if (!Number.isSafeInteger(opts.devId) || opts.devId < 0) throw new ThinshipError('USAGE', `device id must be a non-negative integer, got ${opts.devId}`);
  const spool = await RecordSpool.create(2, { dir: opts.spoolDir });
  let mappings: MappingSpool | undefined;
  try {
    if (opts.mappingSpool) mappings = await MappingSpool.create({ dir: opts.spoolDir });
    let counter: RunCounter | undefined;
    let coalescer: Coalescer | undefined;
    let device: ThinDevice | undefined;
    let mappedEndBlocks = 0;
    const drain = async (): Promise<void> => {
      await spool.drain();
      await mappings?.drain();
    };
    const res = await source({
      onSuperblock(sb) {
        counter = new RunCounter(sb.dataBlockSizeSectors * SECTOR_BYTES, maxOpBytes, volumeSizeBytes, spoolRun(spool), opts.volumeSizeFlag);
        coalescer = new Coalescer(counter.run);
      },
      onDevice(d) {
        if (d.devId === opts.devId) device = d;
      },
      onMappings(devId: number, batch: Mapping[]) {
        if (devId !== opts.devId) return;
        const c = coalescer!;
        for (const m of batch) {
          c.push('data', m.originBlock, m.lengthBlocks);
          mappings?.add(m.originBlock, m.dataBlock, m.lengthBlocks);
        }
        const last = batch[batch.length - 1];
        if (last !== undefined) mappedEndBlocks = last.originBlock + last.lengthBlocks;
        if (spool.needsDrain || mappings?.needsDrain) return drain();
      },
      needsDataBlocks: opts.mappingSpool === true,
      onMappedRuns(devId: number, pairs: Float64Array, count: number) {
        if (devId !== opts.devId || count === 0) return;
        if (mappings !== undefined) throw new ThinshipError('INTERNAL', 'onMappedRuns on a plan that keeps the mappings (needsDataBlocks)');
        const c = coalescer!;
        for (let j = 0; j < 2 * count; j += 2) c.push('data', pairs[j]!, pairs[j + 1]!);
        mappedEndBlocks = pairs[2 * count - 2]! + pairs[2 * count - 1]!;
        if (spool.needsDrain) return drain();
      },
    });
    if (device === undefined) {
      const others = res.devices.map((d) => d.devId);
      throw new ThinshipError(
        'NOT_FOUND',
        `thin device id ${opts.devId} is not in the pool metadata${others.length > 0 ? ` (devices found: ${others.join(', ')})` : ' (thin_dump printed no device)'}`,
        { details: { devId: opts.devId } },
      );
    }
    coalescer!.finish();
    refuseCutVolume(opts.volumeSizeFlag, volumeSizeBytes, mappedEndBlocks * counter!.blockSizeBytes, counter!.blockSizeBytes, `device ${opts.devId}`);
    await spool.finish();
    await mappings?.finish();
    const plan = new SpooledPlan(counter!.totals(volumeSizeBytes ?? counter!.endBytes), spool, maxOpBytes);
    return { plan, superblock: res.superblock, device, mappings };
  } catch (e) {
    await spool.close();
    await mappings?.close();
    throw e;
  }
}

export interface DeltaPlanOptions {
  /** Volume size of the newer snapshot (from lvs). When not given, the end of the last range of any kind. Ranges beyond it are BAD_METADATA. */
  volumeSizeBytes?: number;
  maxOpBytes?: number;
  spoolDir?: string;
  /** As FullPlanOptions.volumeSizeFlag; the snapshot's mappings are its `different`, `right_only` and `same` ranges. */
  volumeSizeFlag?: string;
}

export interface DeltaPlanResult {
  plan: Plan;
  superblock: Superblock;
  leftDevId: number;
  rightDevId: number;
}

/**
 * An incremental send from thin_delta output (plain or --verbose): `different`
 * and `right_only` become data (adjacent ones merge), `left_only` becomes unmap,
 * `same` is skipped.
 */
export async function buildDeltaPlan(delta: Readable, opts: DeltaPlanOptions = {}): Promise<DeltaPlanResult> {
  holdInput(delta);
  return buildDeltaPlanFrom((sink) => parseThinDelta(delta, sink), opts);
}

/** buildDeltaPlan from any source of the delta's typed ranges. */
export async function buildDeltaPlanFrom(source: DeltaSource, opts: DeltaPlanOptions = {}): Promise<DeltaPlanResult> {
  const maxOpBytes = checkMaxOpBytes(opts.maxOpBytes);
  const volumeSizeBytes = checkVolumeSize(opts.volumeSizeBytes);
  const spool = await RecordSpool.create(2, { dir: opts.spoolDir });
  try {
    let counter: RunCounter | undefined;
    let coalescer: Coalescer | undefined;
    let extentBlocks = 0;
    let snapEndBlocks = 0;
    const res = await source({
      onSuperblock(sb) {
        counter = new RunCounter(sb.dataBlockSizeSectors * SECTOR_BYTES, maxOpBytes, volumeSizeBytes, spoolRun(spool), opts.volumeSizeFlag);
        coalescer = new Coalescer(counter.run);
      },
      onRanges(batch: DeltaRange[]) {
        const c = coalescer!;
        for (const r of batch) {
          if (r.kind === 'same') c.skip(r.beginBlock, r.lengthBlocks);
          else c.push(r.kind === 'left_only' ? 'unmap' : 'data', r.beginBlock, r.lengthBlocks);
          if (r.kind !== 'left_only') snapEndBlocks = r.beginBlock + r.lengthBlocks;
        }
        const last = batch[batch.length - 1];
        if (last !== undefined) extentBlocks = last.beginBlock + last.lengthBlocks;
        if (spool.needsDrain) return spool.drain();
      },
      onPlanRuns(runs: Float64Array, count: number) {
        if (count === 0) return;
        const c = coalescer!;
        for (let j = 0; j < 3 * count; j += 3) {
          const unmap = runs[j + 2] === PLAN_RUN_UNMAP;
          c.push(unmap ? 'unmap' : 'data', runs[j]!, runs[j + 1]!);
          if (!unmap) snapEndBlocks = runs[j]! + runs[j + 1]!;
        }
        extentBlocks = runs[3 * count - 3]! + runs[3 * count - 2]!;
        if (spool.needsDrain) return spool.drain();
      },
    });
    coalescer!.finish();
    if (res.snapEndBlocks !== undefined) snapEndBlocks = Math.max(snapEndBlocks, res.snapEndBlocks);
    refuseCutVolume(opts.volumeSizeFlag, volumeSizeBytes, snapEndBlocks * counter!.blockSizeBytes, counter!.blockSizeBytes, `device ${res.rightDevId}`);
    await spool.finish();
    const c = counter!;
    if (res.extentBlocks !== undefined) extentBlocks = Math.max(extentBlocks, res.extentBlocks);
    const extentBytes = extentBlocks * c.blockSizeBytes;
    if (!Number.isSafeInteger(extentBytes))
      throw new ThinshipError('BAD_METADATA', `thin_delta ranges end at block ${extentBlocks}, beyond the largest byte offset this program handles`);
    const plan = new SpooledPlan(c.totals(volumeSizeBytes ?? extentBytes), spool, maxOpBytes);
    return { plan, superblock: res.superblock, leftDevId: res.leftDevId, rightDevId: res.rightDevId };
  } catch (e) {
    await spool.close();
    throw e;
  }
}
