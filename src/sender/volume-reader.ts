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
import { spawnTool } from '../exec/run.js';
import { classifyThinTool } from '../exec/known-errors.js';
import { buildFullPlan } from '../thin/plan.js';
import type { MappingSpool } from '../thin/spool.js';
import type { SendPlan } from '../thin/planner.js';

export interface VolumeReader {
  /** Fills `buf` with the volume's bytes at [offsetBytes, offsetBytes + buf.length). */
  read(buf: Buffer, offsetBytes: number): Promise<void>;
  /** Tells the kernel the range will not be read again (keeps the page cache clean). */
  done(offsetBytes: number, lengthBytes: number): Promise<void>;
  close(): Promise<void>;
}

async function readFully(h: VolumeHandle, buf: Buffer, offsetBytes: number, what: string): Promise<void> {
  let got = 0;
  while (got < buf.length) {
    const n = await h.readAt(buf.subarray(got), offsetBytes + got);
    if (n === 0) throw new ThinshipError('IO_ERROR', `${what}: unexpected end of ${h.path} at byte ${offsetBytes + got} (wanted ${buf.length - got} more bytes)`);
    got += n;
  }
}

/**
 * Keeps the source out of the page cache (a send must not evict everything
 * else on the host). A DONTNEED right after each read does not work: pages
 * just read sit in per-CPU LRU batches that the kernel's fadvise skips when it
 * runs on another thread (libuv's pool), so ~90% stayed cached. Dropping the
 * whole file every 32 MiB of reads, and at the end, leaves only the latest
 * batch cached (measured: 8 MiB of 256 MiB read).
 */
const CACHE_DROP_EVERY_BYTES = 32 * 1024 * 1024;
class CacheDropper {
  private sinceDrop = 0;
  constructor(private h: VolumeHandle) {}
  async noteRead(bytes: number): Promise<void> {
    this.sinceDrop += bytes;
    if (this.sinceDrop >= CACHE_DROP_EVERY_BYTES) await this.dropAll();
  }
  async dropAll(): Promise<void> {
    this.sinceDrop = 0;
    await this.h.adviseDontNeed(0, 0).catch(() => undefined); // length 0: to the end
  }
}

class DeviceReader implements VolumeReader {
  private cache: CacheDropper;
  constructor(private h: VolumeHandle, private restore: () => Promise<void>, private what: string) { this.cache = new CacheDropper(h); }
  async read(buf: Buffer, offsetBytes: number) { await readFully(this.h, buf, offsetBytes, this.what); }
  async done(offsetBytes: number, lengthBytes: number) { void offsetBytes; await this.cache.noteRead(lengthBytes); }
  async close() {
    try { await this.cache.dropAll(); await this.h.close(); } finally { await this.restore(); }
  }
}

class OfflineReader implements VolumeReader {
  private cache: CacheDropper;
  constructor(private data: VolumeHandle, private mappings: MappingSpool, private blockBytes: number, private ownsMappings: boolean, private what: string) { this.cache = new CacheDropper(data); }
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
      }
      done += n;
    }
  }
  async done(offsetBytes: number, lengthBytes: number) { void offsetBytes; await this.cache.noteRead(lengthBytes); }
  async close() {
    try { await this.cache.dropAll(); await this.data.close(); } finally { if (this.ownsMappings) await this.mappings.close(); }
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
    // An incremental plan came from thin_delta; the snapshot's own mappings come from thin_dump.
    const t = spawnTool('thin_dump', ['--dev-id', String(spec.snapDevId), spec.metadataPath], { signal: opts.signal, classify: classifyThinTool });
    const [r] = await Promise.all([buildFullPlan(t.stdout, { devId: spec.snapDevId, mappingSpool: true }), t.done]);
    await r.plan.close();
    mappings = r.mappings!;
    owns = true;
  }
  const data = await openVolume(spec.dataPath, { mode: 'read' }).catch(async (e) => { if (owns) await mappings!.close(); throw e; });
  return new OfflineReader(data, mappings, blockBytes, owns, `offline pool ${spec.dataPath} device ${spec.snapDevId}`);
}
