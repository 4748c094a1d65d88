/**
 * Reading a snapshot's content by volume offset.
 * - LVM: the snapshot's own device (activated with -K for the read if it was
 *   inactive, and put back afterwards); page cache dropped behind the reads.
 * - Offline pool: each origin block is looked up in the snapshot's mappings
 *   and read from the pool's data file at its data block.
 */
import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ThinshipError } from '../errors.js';
import { nativeDevice } from '../device/native.js';
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

/** O_DIRECT needs offset, length and buffer address aligned to the logical block size; 4096 covers every common device. */
export const DIRECT_ALIGN_BYTES = 4096;

/**
 * O_DIRECT reads of the source, as LINBIT's thin_send reads: the device's
 * bytes go straight into the caller's buffer, without passing through (and
 * then being dropped from) the page cache. Only reads whose offset, length
 * and buffer address are all aligned go this way (the read buffers of both
 * modes are: sender/chunk-buffers.ts ReadSlabs and ChunkBuffers); the rest, and every read where the file
 * system refuses O_DIRECT (tmpfs: EINVAL at open), go through the page cache
 * as before.
 */
export class DirectReads {
  private constructor(
    private fh: FileHandle,
    private what: string,
  ) {}

  /** undefined when `path` cannot be opened with O_DIRECT (then every read is buffered). */
  static async open(path: string, what: string): Promise<DirectReads | undefined> {
    const fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_DIRECT).catch(() => undefined);
    return fh && new DirectReads(fh, what);
  }

  private off = false;

  private aligned(buf: Buffer, offsetBytes: number): boolean {
    const a = DIRECT_ALIGN_BYTES;
    return offsetBytes % a === 0 && buf.length % a === 0 && (nativeDevice().addressMod(buf.buffer as ArrayBuffer, a) + buf.byteOffset) % a === 0;
  }

  /**
   * Reads `buf` at `offsetBytes` with O_DIRECT as far as it can: the bytes read
   * (0 when not aligned or refused); the caller reads the rest through the page cache.
   */
  async read(buf: Buffer, offsetBytes: number): Promise<number> {
    if (this.off || buf.length === 0 || !this.aligned(buf, offsetBytes)) return 0;
    let got = 0;
    while (got < buf.length) {
      let n: number;
      try {
        n = (await this.fh.read(buf, got, buf.length - got, offsetBytes + got)).bytesRead;
      } catch (e) {
        if (got === 0 && (e as NodeJS.ErrnoException).code === 'EINVAL') {
          this.off = true; // e.g. a logical block larger than DIRECT_ALIGN_BYTES: buffered from now on
          return 0;
        }
        throw new ThinshipError('IO_ERROR', `${this.what}: O_DIRECT read of ${buf.length} bytes at ${offsetBytes} failed: ${(e as Error).message}`, {
          cause: e,
        });
      }
      got += n;
      // The end of the source, or a short read that left the rest unaligned: the caller finishes (and names an early end).
      if (n === 0 || got % DIRECT_ALIGN_BYTES !== 0) break;
    }
    return got;
  }

  close(): Promise<void> {
    return this.fh.close();
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

/** Reads `buf` at `at`: with O_DIRECT where it can, the rest through the page cache (dropped behind). */
async function readSource(h: VolumeHandle, direct: DirectReads | undefined, cache: CacheDropper, buf: Buffer, at: number, what: string): Promise<void> {
  const d = direct ? await direct.read(buf, at) : 0;
  if (d === buf.length) return;
  await readFully(h, buf.subarray(d), at + d, what);
  await cache.noteRead(at + d, buf.length - d);
}

class DeviceReader implements VolumeReader {
  private cache: CacheDropper;
  constructor(
    private h: VolumeHandle,
    private direct: DirectReads | undefined,
    private restore: () => Promise<void>,
    private what: string,
  ) {
    this.cache = new CacheDropper(h);
  }
  async read(buf: Buffer, offsetBytes: number) {
    await readSource(this.h, this.direct, this.cache, buf, offsetBytes, this.what);
  }
  async close() {
    try {
      await this.cache.dropAll();
      await this.direct?.close();
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
    private direct: DirectReads | undefined,
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
        await readSource(this.data, this.direct, this.cache, buf.subarray(done, done + n), at, this.what);
      }
      done += n;
    }
  }
  async close() {
    try {
      await this.cache.dropAll();
      await this.direct?.close();
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
      const what = `${snap.vg}/${snap.lv}`;
      return new DeviceReader(h, await DirectReads.open(snap.devicePath, what), restore, what);
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
  const what = `offline pool ${spec.dataPath} device ${spec.snapDevId}`;
  return new OfflineReader(data, await DirectReads.open(spec.dataPath, what), mappings, blockBytes, owns, what);
}
