/**
 * Reading a snapshot's content by volume offset.
 * - LVM: the snapshot's own device (activated with -K for the read if it was
 *   inactive, and put back afterwards); page cache dropped behind the reads.
 * - Offline pool: each origin block is looked up in the snapshot's mappings
 *   and read from the pool's data file at its data block.
 */
import { ThinshipError } from '../errors.js';
import { openVolume, type VolumeHandle } from '../device/volume.js';
import { activateForReading } from '../thin/lvm.js';
import type { MappingSpool } from '../thin/spool.js';
import { snapshotMappings, type SendPlan } from '../thin/planner.js';

export interface VolumeReader {
  /** Fills `buf` with the volume's bytes at [offsetBytes, offsetBytes + buf.length); the source is read once, so those pages leave the page cache soon after. */
  read(buf: Buffer, offsetBytes: number): Promise<void>;
  close(): Promise<void>;
}

async function readFully(h: VolumeHandle, buf: Buffer, offsetBytes: number, what: string): Promise<void> {
  let got = 0;
  while (got < buf.length) {
    const n = await h.readAt(buf.subarray(got), offsetBytes + got);
    if (n === 0)
      throw new ThinshipError('IO_ERROR', `${what}: unexpected end of ${h.path} at byte ${offsetBytes + got} (wanted ${buf.length - got} more bytes)`);
    got += n;
  }
}

/**
 * Keeps the source out of the page cache (a send must not evict everything
 * else on the host). Two kernel details shape this (measured on 6.1 and 6.18):
 * - the page cache holds large folios (2 MiB here): DONTNEED drops only
 *   folios wholly inside the range, so 1 MiB ranges dropped nothing (490 of
 *   512 MiB stayed cached). Ranges are widened to DROP_ALIGN_BYTES.
 * - pages just read may still sit in per-CPU LRU batches, which DONTNEED
 *   skips; and widening right at the read front would throw away the kernel's
 *   read-ahead (1.37x the disk reads). So a range is dropped once
 *   DROP_LAG_BYTES more have been read.
 * With both: ~12 MiB cached during a send and 1.02x the data read from disk
 * (a whole-file drop every 32 MiB, used before, read 1.29x). The whole file is
 * dropped once more at the end.
 */
const DROP_ALIGN_BYTES = 2 * 1024 * 1024;
const DROP_LAG_BYTES = 8 * 1024 * 1024;
class CacheDropper {
  private readonly behind: Array<{ offsetBytes: number; lengthBytes: number }> = [];
  private behindBytes = 0;
  /** The last window dropped: consecutive small reads share windows. */
  private lastStart = -1;
  private lastEnd = -1;
  constructor(private h: VolumeHandle) {}
  /** A range of the file was read into memory: it will not be read again. */
  async noteRead(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.behind.push({ offsetBytes, lengthBytes });
    this.behindBytes += lengthBytes;
    while (this.behindBytes > DROP_LAG_BYTES) {
      const r = this.behind.shift()!;
      this.behindBytes -= r.lengthBytes;
      const start = Math.floor(r.offsetBytes / DROP_ALIGN_BYTES) * DROP_ALIGN_BYTES;
      const end = Math.ceil((r.offsetBytes + r.lengthBytes) / DROP_ALIGN_BYTES) * DROP_ALIGN_BYTES;
      if (start >= this.lastStart && end <= this.lastEnd) continue;
      this.lastStart = start;
      this.lastEnd = end;
      await this.h.adviseDontNeed(start, end - start).catch(() => undefined);
    }
  }
  async dropAll(): Promise<void> {
    this.behind.length = 0;
    this.behindBytes = 0;
    await this.h.adviseDontNeed(0, 0).catch(() => undefined); // length 0: to the end
  }
}

class DeviceReader implements VolumeReader {
  private cache: CacheDropper;
  constructor(
    private h: VolumeHandle,
    private restore: () => Promise<void>,
    private what: string,
  ) {
    this.cache = new CacheDropper(h);
  }
  async read(buf: Buffer, offsetBytes: number) {
    await readFully(this.h, buf, offsetBytes, this.what);
    await this.cache.noteRead(offsetBytes, buf.length);
  }
  async close() {
    try {
      await this.cache.dropAll();
      await this.h.close();
    } finally {
      await this.restore();
    }
  }
}

class OfflineReader implements VolumeReader {
  private cache: CacheDropper;
  constructor(
    private data: VolumeHandle,
    private mappings: MappingSpool,
    private blockBytes: number,
    private ownsMappings: boolean,
    private what: string,
  ) {
    this.cache = new CacheDropper(data);
  }
  /** Any byte range: ops are block-aligned except where maxOpBytes cuts a large block, or at a clipped volume end. */
  async read(buf: Buffer, offsetBytes: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const pos = offsetBytes + done;
      const origin = Math.floor(pos / this.blockBytes);
      const inner = pos - origin * this.blockBytes;
      const hit = await this.mappings.lookup(origin);
      // Not mapped: reads as zeros (plans send only mapped blocks; whole-volume reads, e.g. verify, meet these).
      const runBytes = (hit ? hit.runBlocks : 1) * this.blockBytes - inner;
      const n = Math.min(runBytes, buf.length - done);
      if (!hit) buf.fill(0, done, done + n);
      else {
        const at = hit.dataBlock * this.blockBytes + inner;
        await readFully(this.data, buf.subarray(done, done + n), at, this.what);
        await this.cache.noteRead(at, n);
      }
      done += n;
    }
  }
  async close() {
    try {
      await this.cache.dropAll();
      await this.data.close();
    } finally {
      if (this.ownsMappings) await this.mappings.close();
    }
  }
}

/** Opens a reader of the plan's snapshot (the source, never the base). */
export async function openSourceReader(p: SendPlan, opts: { signal?: AbortSignal } = {}): Promise<VolumeReader> {
  if (p.spec.kind === 'lvm') {
    const snap = p.lvm!.snap;
    const restore = await activateForReading(snap, opts);
    try {
      const h = await openVolume(snap.devicePath, { mode: 'read' });
      return new DeviceReader(h, restore, `${snap.vg}/${snap.lv}`);
    } catch (e) {
      await restore().catch(() => undefined);
      throw e;
    }
  }
  const spec = p.spec;
  const blockBytes = p.plan.totals.blockSizeBytes;
  let mappings = p.mappings;
  let owns = false;
  if (!mappings) {
    // A plan made without withMappings (an incremental from thin_delta): the snapshot's own mappings come from thin_dump.
    mappings = await snapshotMappings({ metadataPath: spec.metadataPath, useMetadataSnap: false, snapDevId: spec.snapDevId, signal: opts.signal }, {});
    owns = true;
  }
  const data = await openVolume(spec.dataPath, { mode: 'read' }).catch(async (e) => {
    if (owns) await mappings.close();
    throw e;
  });
  return new OfflineReader(data, mappings, blockBytes, owns, `offline pool ${spec.dataPath} device ${spec.snapDevId}`);
}
