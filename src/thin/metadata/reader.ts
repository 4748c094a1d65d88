/**
 * Reads a thin pool's metadata (the kernel's drivers/md/dm-thin-metadata.c):
 * the superblock (or, for a live pool, the metadata snapshot's copy of it at
 * the held root), the device details btree (dev id -> 24-byte details) and
 * the two-level mapping tree (dev id -> root of the device's tree; virtual
 * block -> u64 `data block << 24 | time`).
 */
import { ThinshipError } from '../../errors.js';
import type { Mapping, Superblock, ThinDevice } from '../model.js';
import { BlockReader, LoopYielder, type BlockReaderOptions } from './block-reader.js';
import { BtreeNode, NODE_HEADER_BYTES, leafBatches, leafOfBatch, leaves, lookup } from './btree.js';
import { metadataAddon, runAddonWalk } from './addon.js';
import { parseSuperblock, SUPERBLOCK_LOCATION, unknownFormat, u64, type DiskSuperblock } from './superblock.js';

/** struct disk_device_details: mapped_blocks u64, transaction_id u64, creation_time u32, snapshotted_time u32. */
const DEVICE_DETAILS_BYTES = 24;
/** Top level: dev id -> u64 root; bottom level: virtual block -> u64 block_time. */
export const MAPPING_VALUE_BYTES = 8;
/** Mappings handed to a sink per call. */
const MAPPING_BATCH = 4096;

export interface OpenOptions extends BlockReaderOptions {
  /** Read the metadata snapshot (the superblock copy at held_root) instead of the live superblock: thin_dump -m. */
  useMetadataSnap?: boolean;
}

/**
 * A checked leaf's keys as runs of consecutive blocks into `out` (first,
 * length, ...; room for 2 * nr_entries). Returns the number of runs.
 */
function mappedRunsJs(leaf: Buffer, out: Float64Array): number {
  const nr = leaf.readUInt32LE(16);
  let runs = 0,
    begin = 0,
    len = 0;
  for (let i = 0; i < nr; i++) {
    const k = leaf.readUInt32LE(NODE_HEADER_BYTES + 8 * i + 4) * 0x1_0000_0000 + leaf.readUInt32LE(NODE_HEADER_BYTES + 8 * i);
    if (len > 0 && k === begin + len) {
      len++;
      continue;
    }
    if (len > 0) {
      out[2 * runs] = begin;
      out[2 * runs + 1] = len;
      runs++;
    }
    begin = k;
    len = 1;
  }
  if (len > 0) {
    out[2 * runs] = begin;
    out[2 * runs + 1] = len;
    runs++;
  }
  return runs;
}

export class MetadataReader {
  private constructor(
    readonly blocks: BlockReader,
    readonly sb: DiskSuperblock,
    readonly live: DiskSuperblock,
  ) {}

  /**
   * Opens the metadata at `path` and reads its superblock (and with
   * useMetadataSnap the held copy). An unknown format is not refused here:
   * see `unknownFormat()` (auto falls back to the thin tools).
   */
  static async open(path: string, opts: OpenOptions = {}): Promise<MetadataReader> {
    const blocks = await BlockReader.open(path, opts);
    try {
      const live = parseSuperblock(blocks.read(SUPERBLOCK_LOCATION, 'superblock'), SUPERBLOCK_LOCATION, path);
      let sb = live;
      if (opts.useMetadataSnap) {
        if (live.heldRoot === 0) throw new ThinshipError('NO_METADATA_SNAP', `${path}: no current metadata snapshot (the superblock's held root is 0)`);
        sb = parseSuperblock(blocks.read(live.heldRoot, 'metadata snapshot superblock'), live.heldRoot, path);
      }
      return new MetadataReader(blocks, sb, live);
    } catch (e) {
      await blocks.close();
      throw e;
    }
  }

  /** Why the native reader cannot read this metadata, or undefined. */
  unknownFormat(): string | undefined {
    return unknownFormat(this.live) ?? (this.sb === this.live ? undefined : unknownFormat(this.sb));
  }

  /** The superblock in the model's terms (what thin_dump prints). */
  superblock(): Superblock {
    const s = this.sb;
    return {
      uuid: s.uuid.every((x) => x === 0) ? '' : s.uuid.toString('hex'),
      time: s.time,
      transaction: s.transactionId,
      dataBlockSizeSectors: s.dataBlockSizeSectors,
      nrDataBlocks: s.nrDataBlocks,
      version: s.version,
      flags: s.flags,
    };
  }

  private deviceOf(n: BtreeNode, i: number): ThinDevice {
    const off = n.valueOffset(i);
    const what = `device details of device ${n.key(i)} in block ${n.block}`;
    return {
      devId: n.key(i),
      mappedBlocks: u64(n.buf, off, `${what}: mapped_blocks`),
      transaction: u64(n.buf, off + 8, `${what}: transaction_id`),
      creationTime: n.buf.readUInt32LE(off + 16),
      snapTime: n.buf.readUInt32LE(off + 20),
    };
  }

  /** Every device's details, in dev id order. */
  async devices(): Promise<ThinDevice[]> {
    const out: ThinDevice[] = [];
    for (const n of leaves(this.blocks, this.sb.deviceDetailsRoot, DEVICE_DETAILS_BYTES, 'device details tree')) {
      for (let i = 0; i < n.nrEntries; i++) out.push(this.deviceOf(n, i));
    }
    return out;
  }

  async device(devId: number): Promise<ThinDevice | undefined> {
    const hit = lookup(this.blocks, this.sb.deviceDetailsRoot, DEVICE_DETAILS_BYTES, devId, 'device details tree');
    return hit && this.deviceOf(hit.node, hit.index);
  }

  /**
   * The root of device `devId`'s mapping tree. NOT_FOUND (naming the devices
   * there are) when the pool has no such device; BAD_METADATA when only one of
   * the two trees knows it.
   */
  async deviceRoot(devId: number): Promise<{ device: ThinDevice; root: number }> {
    const device = await this.device(devId);
    const hit = lookup(this.blocks, this.sb.dataMappingRoot, MAPPING_VALUE_BYTES, devId, 'mapping tree (top level)');
    if (device === undefined && hit === undefined) {
      const ids = (await this.devices()).map((d) => d.devId);
      throw new ThinshipError(
        'NOT_FOUND',
        `thin device id ${devId} is not in the pool metadata${ids.length > 0 ? ` (devices found: ${ids.join(', ')})` : ' (the pool has no device)'}`,
        { details: { devId } },
      );
    }
    if (device === undefined || hit === undefined) {
      throw new ThinshipError(
        'BAD_METADATA',
        `thin device ${devId} is in the ${device ? 'device details' : 'mapping'} tree but not in the ${device ? 'mapping' : 'device details'} tree of ${this.blocks.path}`,
        { details: { devId } },
      );
    }
    return { device, root: hit.node.u64Value(hit.index, `mapping tree (top level) entry of device ${devId}`) };
  }

  /**
   * Device `devId`'s mappings in origin order, as thin_dump prints them:
   * consecutive blocks with consecutive data blocks and the same time merge
   * into one range. Batches of up to MAPPING_BATCH, each awaited. The batch
   * array and its Mapping objects are reused for the next batch once the
   * callback's promise settles: copy what you keep (a full send of 10 M
   * mappings otherwise made 10 M short-lived objects, and their collection
   * was the largest cost after the checksums).
   */
  async walkMappings(root: number, devId: number, onMappings: (batch: Mapping[]) => void | Promise<void>): Promise<void> {
    const batch: Mapping[] = [];
    let used = 0;
    /** The run being built: origin, data block, length, time; no run while len is 0. */
    let origin = 0,
      data = 0,
      len = 0,
      time = 0;
    const flush = (): void => {
      const m = batch[used];
      if (m === undefined) batch.push({ originBlock: origin, dataBlock: data, lengthBlocks: len, time });
      else {
        m.originBlock = origin;
        m.dataBlock = data;
        m.lengthBlocks = len;
        m.time = time;
      }
      used++;
    };
    const yielder = new LoopYielder();
    for (const n of leaves(this.blocks, root, MAPPING_VALUE_BYTES, `mapping tree of device ${devId}`)) {
      const words = n.words;
      const nr = n.nrEntries;
      let kw = NODE_HEADER_BYTES >>> 2;
      let vw = n.valueOffset(0) >>> 2;
      for (let i = 0; i < nr; i++, kw += 2, vw += 2) {
        // Keys were checked by parseNode (safe integers, increasing); values are data_block << 24 | time.
        const o = words[kw + 1]! * 0x1_0000_0000 + words[kw]!;
        const lo = words[vw]!;
        const d = words[vw + 1]! * 256 + (lo >>> 24);
        const t = lo & 0xffffff;
        if (len > 0 && o === origin + len && d === data + len && t === time) {
          len++;
          continue;
        }
        if (len > 0) flush();
        origin = o;
        data = d;
        len = 1;
        time = t;
      }
      if (used >= MAPPING_BATCH) {
        await onMappings(used === batch.length ? batch : batch.slice(0, used));
        used = 0;
        await yielder.due();
      }
    }
    if (len > 0) flush();
    if (used > 0) await onMappings(batch.slice(0, used));
  }

  /**
   * Device `devId`'s mapped blocks as runs of consecutive blocks, in order,
   * without where they map to (what a full plan needs when it keeps no
   * mappings): batches of up to MAPPING_BATCH runs as pairs (first block,
   * length) in a Float64Array reused once the callback's promise settles.
   * Runs that continue across a leaf boundary are joined. The walk runs in
   * the addon (mappedRunsWalkStart/Next: reads, checks and runs in C, no
   * JavaScript step per block or leaf); walkMappedRunsJs is its twin.
   */
  async walkMappedRuns(root: number, devId: number, onRuns: (pairs: Float64Array, count: number) => void | Promise<void>, signal?: AbortSignal): Promise<void> {
    const { mappedRunsWalkStart, mappedRunsWalkNext } = metadataAddon();
    if (mappedRunsWalkStart !== undefined && mappedRunsWalkNext !== undefined) {
      // The whole walk in the addon; the JavaScript walk below is its twin, where the addon is not built.
      const walk = mappedRunsWalkStart(this.blocks.fd, this.blocks.nrBlocks, this.blocks.path, root, devId);
      const stats = new Float64Array(1);
      try {
        await runAddonWalk((out) => mappedRunsWalkNext(walk, out, stats), new Float64Array(2 * MAPPING_BATCH), onRuns, signal);
      } finally {
        this.blocks.blocksRead += stats[0]!;
      }
      return;
    }
    await this.walkMappedRunsJs(root, devId, onRuns);
  }

  /** walkMappedRuns in JavaScript: the addon's walk's twin (a unit test checks they agree) and the fallback without it. */
  async walkMappedRunsJs(root: number, devId: number, onRuns: (pairs: Float64Array, count: number) => void | Promise<void>): Promise<void> {
    const what = `mapping tree of device ${devId}`;
    // Room for a full batch plus one leaf's runs (at most its entries, < 512).
    const pairs = new Float64Array(2 * (MAPPING_BATCH + 512));
    let count = 0;
    /** Hands on the full batch but its last run, which may continue in the next leaf. */
    const flush = async (): Promise<void> => {
      const last0 = pairs[2 * count - 2]!,
        last1 = pairs[2 * count - 1]!;
      await onRuns(pairs, count - 1);
      pairs[0] = last0;
      pairs[1] = last1;
      count = 1;
    };
    /** Appends one checked leaf's runs (mappedRunsJs), joining its first to the last. */
    const addLeaf = (n: BtreeNode): void => {
      if (n.nrEntries === 0) return;
      const at = 2 * count;
      const got = mappedRunsJs(n.buf, count === 0 ? pairs : pairs.subarray(at));
      if (count > 0 && pairs[at - 2]! + pairs[at - 1]! === pairs[at]!) {
        pairs[at - 1]! += pairs[at + 1]!;
        pairs.copyWithin(at, at + 2, at + 2 * got);
        count += got - 1;
      } else {
        count += got;
      }
    };
    const yielder = new LoopYielder();
    for (const x of leafBatches(this.blocks, root, MAPPING_VALUE_BYTES, what)) {
      if (x instanceof BtreeNode) addLeaf(x);
      else
        for (let k = 0; k < x.count; k++) {
          addLeaf(leafOfBatch(x, k, MAPPING_VALUE_BYTES, what));
          if (count >= MAPPING_BATCH) await flush();
        }
      if (count >= MAPPING_BATCH) {
        await flush();
        await yielder.due();
      }
    }
    if (count > 0) await onRuns(pairs, count);
  }

  close(): Promise<void> {
    return this.blocks.close();
  }
}
