/**
 * What a block device can do, from sysfs (`/sys/dev/block/MAJ:MIN/...`) and,
 * for device-mapper devices, from `dmsetup table`: logical block size, discard
 * granularity and limits, and whether a discard is known to make the range
 * read back as zeros.
 *
 * `/sys/dev/block/MAJ:MIN` is used rather than `/sys/block/<basename>`: in a
 * system without udev `/dev/mapper/vg-lv` is a device node, not a link to
 * dm-N, and /sys/block/vg-lv does not exist (seen in the VM samples).
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { runTool } from '../exec/run.js';
import { lvOfDmName, type LvName } from '../thin/names.js';

export interface BlockLimits {
  logicalBlockBytes: number;
  /** 0 when the device does not support discard (granularity 0 or discard_max_bytes 0). */
  discardGranularityBytes: number;
  discardMaxBytes: number;
  /** Offset from the device start where granularity-aligned discard units begin (partitions). */
  discardAlignmentBytes: number;
  /** `queue/discard_zeroes_data`; hard-wired to 0 by kernels since 4.12, so only a 1 means anything. */
  discardZeroesData: boolean;
  isLoop: boolean;
  /** Present when the device is a device-mapper device (sysfs has a dm/ directory). */
  dm?: { name: string; uuid: string };
}

/** Linux dev_t encoding (glibc's gnu_dev_major/minor). */
export function devMajorMinor(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev & 0x00000000000fff00n) >> 8n) | ((rdev & 0xfffff00000000000n) >> 32n));
  const minor = Number((rdev & 0x00000000000000ffn) | ((rdev & 0x00000ffffff00000n) >> 12n));
  return { major, minor };
}

async function readText(p: string): Promise<string | undefined> {
  try {
    return (await readFile(p, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

async function readInt(p: string): Promise<number | undefined> {
  const s = await readText(p);
  if (s === undefined || !/^\d+$/.test(s)) return undefined;
  return Number(s);
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Reads the queue limits of MAJ:MIN, or undefined when sysfs has no entry
 * (sysfs not mounted). A partition has no queue/ of its own: its parent's is used.
 */
export async function readBlockLimits(major: number, minor: number, sysfsRoot = '/sys'): Promise<BlockLimits | undefined> {
  let dev: string;
  try {
    // A link into /sys/devices/...; resolved first because path.join would
    // treat the '..' below lexically and climb out of /sys/dev/block instead.
    dev = await realpath(path.join(sysfsRoot, 'dev', 'block', `${major}:${minor}`));
  } catch {
    return undefined;
  }
  if (!(await isDir(dev))) return undefined;
  let queue = path.join(dev, 'queue');
  if (!(await isDir(queue))) queue = path.join(path.dirname(dev), 'queue');
  const logicalBlockBytes = await readInt(path.join(queue, 'logical_block_size'));
  if (logicalBlockBytes === undefined || logicalBlockBytes < 512) return undefined;
  const granularity = (await readInt(path.join(queue, 'discard_granularity'))) ?? 0;
  const discardMaxBytes = (await readInt(path.join(queue, 'discard_max_bytes'))) ?? 0;
  const discardAlignmentBytes = (await readInt(path.join(dev, 'discard_alignment'))) ?? 0;
  const discardZeroesData = (await readInt(path.join(queue, 'discard_zeroes_data'))) === 1;
  const isLoop = major === 7 || (await isDir(path.join(dev, 'loop')));
  let dm: BlockLimits['dm'];
  if (await isDir(path.join(dev, 'dm'))) {
    dm = { name: (await readText(path.join(dev, 'dm', 'name'))) ?? '', uuid: (await readText(path.join(dev, 'dm', 'uuid'))) ?? '' };
  }
  return {
    logicalBlockBytes,
    // A device without discard support reports granularity 0 or max 0; treat either as "none".
    discardGranularityBytes: granularity > 0 && discardMaxBytes > 0 ? granularity : 0,
    discardMaxBytes,
    discardAlignmentBytes,
    discardZeroesData,
    isLoop,
    ...(dm ? { dm } : {}),
  };
}

/**
 * The kernel's disk sequence number of MAJ:MIN (Linux 5.15+): it changes when
 * the device gets new media, e.g. a loop device attached to another file, so
 * the same device number no longer means the same content. Undefined when
 * the kernel or sysfs does not say (partitions: their disk's number).
 */
export async function readDiskSeq(major: number, minor: number, sysfsRoot = '/sys'): Promise<string | undefined> {
  let dev: string;
  try {
    dev = await realpath(path.join(sysfsRoot, 'dev', 'block', `${major}:${minor}`)); // resolved before any '..' (see readBlockLimits)
  } catch {
    return undefined;
  }
  const seq = (await readText(path.join(dev, 'diskseq'))) ?? (await readText(path.join(path.dirname(dev), 'diskseq')));
  return seq !== undefined && /^\d+$/.test(seq) ? seq : undefined;
}

/**
 * Target types of a dm device's live table, e.g. ['thin'] for a thin LV,
 * ['linear'] for a plain LV. Undefined if dmsetup is missing or fails: the
 * caller then assumes nothing about discard.
 */
export async function dmTargetTypes(major: number, minor: number, signal?: AbortSignal): Promise<string[] | undefined> {
  try {
    const r = await runTool('dmsetup', ['table', '-j', String(major), '-m', String(minor)], signal ? { signal } : {});
    // Each line: "<start> <length> <target type> <args...>"
    const types = r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => l.trim().split(/\s+/)[2] ?? '');
    return types.length > 0 && types.every((t) => t !== '') ? types : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether discarding a granularity-aligned range of this device is known to
 * make it read back as zeros. Correctness ("reads back as zeros") beats space
 * saving, so only devices whose discard is *defined* to unmap are trusted:
 *
 * - dm-thin (every table line is a `thin` target): a discard of whole pool
 *   blocks unmaps them from this thin device, and unmapped blocks read as
 *   zeros (whether or not the pool passes discards down). Partial blocks are
 *   left untouched by dm-thin — the caller zeroes those edges.
 * - loop: a discard punches a hole in the backing file (fallocate PUNCH_HOLE),
 *   which reads back as zeros.
 * - a kernel that still reports discard_zeroes_data = 1.
 *
 * Everything else (SSDs, SCSI/NVMe LUNs, linear LVs over them, zram, ...):
 * discard is advisory in the ATA/SCSI/NVMe specs and the kernel stopped
 * promising zeros in 4.12, so the caller must zero with write-zeroes instead.
 */
export async function discardZeroesKnown(limits: BlockLimits, major: number, minor: number, signal?: AbortSignal): Promise<boolean> {
  if (limits.discardGranularityBytes === 0) return false;
  if (limits.discardZeroesData || limits.isLoop) return true;
  if (limits.dm) {
    const types = await dmTargetTypes(major, minor, signal);
    return types !== undefined && types.every((t) => t === 'thin');
  }
  return false;
}

/** An LV's dm uuid: `LVM-` and the VG and LV uuids (32 characters each, no dashes); an LVM layer (-tpool, -real, ...) has a suffix. */
const LV_DM_UUID = /^LVM-[A-Za-z0-9]{64}$/;

/**
 * The thin LV behind a block device path (`/dev/VG/LV`, `/dev/mapper/VG-LV`,
 * `/dev/dm-N`): its VG and LV names, from sysfs (dm/uuid says it is an LV
 * itself, not one of its layers; dm/name gives the names) and `dmsetup table`
 * (every line a `thin` target). Undefined for anything else: a file, a
 * missing path, a disk, a linear LV.
 */
export async function thinLvOfDevice(devicePath: string, sysfsRoot = '/sys'): Promise<LvName | undefined> {
  const st = await stat(devicePath, { bigint: true }).catch(() => undefined);
  if (!st?.isBlockDevice()) return undefined;
  const { major, minor } = devMajorMinor(st.rdev);
  const dm = path.join(sysfsRoot, 'dev', 'block', `${major}:${minor}`, 'dm');
  const uuid = await readText(path.join(dm, 'uuid'));
  const name = await readText(path.join(dm, 'name'));
  if (uuid === undefined || name === undefined || !LV_DM_UUID.test(uuid)) return undefined;
  const lv = lvOfDmName(name);
  if (!lv) return undefined;
  const types = await dmTargetTypes(major, minor);
  return types?.every((t) => t === 'thin') ? lv : undefined;
}
