/**
 * Reads a thin pool's metadata (the kernel's drivers/md/dm-thin-metadata.c):
 * the superblock (or, for a live pool, the metadata snapshot's copy of it at
 * the held root), the device details btree (dev id -> 24-byte details) and
 * the two-level mapping tree (dev id -> root of the device's tree; virtual
 * block -> u64 `data block << 24 | time`).
 */
import { ThinshipError } from '../../errors.js';
import type { Mapping, Superblock, ThinDevice } from '../model.js';
import { BlockReader, type BlockReaderOptions } from './block-reader.js';
import { type BtreeNode, leaves, lookup } from './btree.js';
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

/** A leaf value of a device's mapping tree: data block (upper 40 bits) and time (lower 24). */
function unpackBlockTime(n: BtreeNode, i: number): { dataBlock: number; time: number } {
  const off = n.valueOffset(i);
  const lo = n.buf.readUInt32LE(off);
  const hi = n.buf.readUInt32LE(off + 4);
  return { dataBlock: hi * 256 + (lo >>> 24), time: lo & 0xffffff };
}

export class MetadataReader {
  private constructor(readonly blocks: BlockReader, readonly sb: DiskSuperblock, readonly live: DiskSuperblock) {}

  /**
   * Opens the metadata at `path` and reads its superblock (and with
   * useMetadataSnap the held copy). An unknown format is not refused here:
   * see `unknownFormat()` (auto falls back to the thin tools).
   */
  static async open(path: string, opts: OpenOptions = {}): Promise<MetadataReader> {
    const blocks = await BlockReader.open(path, opts);
    try {
      const live = parseSuperblock(await blocks.read(SUPERBLOCK_LOCATION, 'superblock'), SUPERBLOCK_LOCATION, path);
      let sb = live;
      if (opts.useMetadataSnap) {
        if (live.heldRoot === 0) throw new ThinshipError('NO_METADATA_SNAP', `${path}: no current metadata snapshot (the superblock's held root is 0)`);
        sb = parseSuperblock(await blocks.read(live.heldRoot, 'metadata snapshot superblock'), live.heldRoot, path);
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
      time: s.time, transaction: s.transactionId, dataBlockSizeSectors: s.dataBlockSizeSectors,
      nrDataBlocks: s.nrDataBlocks, version: s.version, flags: s.flags,
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
    for await (const n of leaves(this.blocks, this.sb.deviceDetailsRoot, DEVICE_DETAILS_BYTES, 'device details tree')) {
      for (let i = 0; i < n.nrEntries; i++) out.push(this.deviceOf(n, i));
    }
    return out;
  }

  async device(devId: number): Promise<ThinDevice | undefined> {
    const hit = await lookup(this.blocks, this.sb.deviceDetailsRoot, DEVICE_DETAILS_BYTES, devId, 'device details tree');
    return hit && this.deviceOf(hit.node, hit.index);
  }

  /**
   * The root of device `devId`'s mapping tree. NOT_FOUND (naming the devices
   * there are) when the pool has no such device; BAD_METADATA when only one of
   * the two trees knows it.
   */
  async deviceRoot(devId: number): Promise<{ device: ThinDevice; root: number }> {
    const device = await this.device(devId);
    const hit = await lookup(this.blocks, this.sb.dataMappingRoot, MAPPING_VALUE_BYTES, devId, 'mapping tree (top level)');
    if (device === undefined && hit === undefined) {
      const ids = (await this.devices()).map((d) => d.devId);
      throw new ThinshipError('NOT_FOUND', `thin device id ${devId} is not in the pool metadata${ids.length > 0 ? ` (devices found: ${ids.join(', ')})` : ' (the pool has no device)'}`, { details: { devId } });
    }
    if (device === undefined || hit === undefined) {
      throw new ThinshipError('BAD_METADATA', `thin device ${devId} is in the ${device ? 'device details' : 'mapping'} tree but not in the ${device ? 'mapping' : 'device details'} tree of ${this.blocks.path}`, { details: { devId } });
    }
    return { device, root: hit.node.u64Value(hit.index, `mapping tree (top level) entry of device ${devId}`) };
  }

  /**
   * Device `devId`'s mappings in origin order, as thin_dump prints them:
   * consecutive blocks with consecutive data blocks and the same time merge
   * into one range. Batches of up to MAPPING_BATCH, each awaited.
   */
  async walkMappings(root: number, devId: number, onMappings: (batch: Mapping[]) => void | Promise<void>): Promise<void> {
    let batch: Mapping[] = [];
    let cur: Mapping | undefined;
    for await (const n of leaves(this.blocks, root, MAPPING_VALUE_BYTES, `mapping tree of device ${devId}`)) {
      for (let i = 0; i < n.nrEntries; i++) {
        const origin = n.key(i);
        const { dataBlock, time } = unpackBlockTime(n, i);
        if (cur && origin === cur.originBlock + cur.lengthBlocks && dataBlock === cur.dataBlock + cur.lengthBlocks && time === cur.time) {
          cur.lengthBlocks++;
          continue;
        }
        if (cur) batch.push(cur);
        cur = { originBlock: origin, dataBlock, lengthBlocks: 1, time };
      }
      if (batch.length >= MAPPING_BATCH) {
        const b = batch;
        batch = [];
        await onMappings(b);
      }
    }
    if (cur) batch.push(cur);
    if (batch.length > 0) await onMappings(batch);
  }

  close(): Promise<void> {
    return this.blocks.close();
  }
}
