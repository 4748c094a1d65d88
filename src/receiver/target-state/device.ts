/**
 * Raw block-device targets (a loop device, a disk or partition listed under
 * `devices`, or named to pipe-mode `recv`): a device has no extended
 * attributes and no directory to put a sidecar in, so what it holds is
 * recorded in the receiver's state directory, keyed by the device's stable
 * identity, and its undo journal lives there too:
 *
 *   <stateDir>/targets/device-KEY.json        the record (TargetRecord + DeviceCommitStat)
 *   <stateDir>/targets/device-KEY.undo-OWNER   the undo journal of an apply in progress
 *
 * KEY is a hash of the identity (deviceIdentityOf), which follows the
 * content, not the device node:
 *   - a loop device: its backing file's st_dev and inode, and the loop offset
 *     (/sys/dev/block/M:m/loop/{backing_file,offset}); the same file attached
 *     again, at another loop number or after a reboot, is the same target;
 *   - a device-mapper device: its dm uuid; a disk: its WWID (`wwid`,
 *     `device/wwid`) or model and serial (`device/serial`); a partition: its
 *     disk's identity plus partition number and start sector;
 *   - anything else: the boot (/proc/sys/kernel/random/boot_id), device number
 *     and disk sequence number, valid only until the device is re-attached or
 *     the host reboots (then the target has no record: an incremental needs --force);
 *   - no disk sequence number either (kernels before 5.15): no identity, no
 *     record is kept (a full stream applies with a warning; an incremental is
 *     refused unless --force).
 *
 * Divergence (a write since the commit) of a raw device can be seen only as
 * far as the kernel says (README "What the receiver guarantees"):
 *   - its size;
 *   - within the same boot and disk sequence: the kernel's I/O counters of the
 *     device (sectors written and discarded, /sys/dev/block/M:m/stat), which
 *     count every write by anyone;
 *   - a loop device, also across re-attach and reboot: its backing file's size
 *     and mtime (the loop driver writes through the file, which moves it).
 * A disk written after a reboot (or re-attached) cannot be told from one that
 * was not: the check says so in a warning.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join, dirname } from 'node:path';
import { devMajorMinor, readDiskSeq } from '../../device/block-info.js';

export interface DeviceIdentity {
  /** What identifies it, readable (logs, `target show`). */
  description: string;
  /** File-name key in the state directory: a hash of the description. */
  key: string;
  /** Valid only until a reboot or re-attach (no stable identity could be read). */
  perBoot: boolean;
}

/** What the device looked like at commit: anything written since moves one of these. */
export interface DeviceCommitStat {
  sizeBytes: string;
  bootId: string;
  diskSeq: string;
  /** Sectors written and discarded since the device appeared (kernel I/O counters). */
  writeSectors: string;
  discardSectors: string;
  /** Loop devices: the backing file's size and mtime. */
  backing?: { sizeBytes: string; mtimeNs: string };
}

const SYS = '/sys';

async function readText(p: string): Promise<string | undefined> {
  try {
    const s = (await readFile(p, 'utf8')).trim();
    return s === '' ? undefined : s;
  } catch {
    return undefined;
  }
}

async function sysDir(rdev: bigint): Promise<string | undefined> {
  const { major, minor } = devMajorMinor(rdev);
  try {
    return await realpath(join(SYS, 'dev', 'block', `${major}:${minor}`));
  } catch {
    return undefined;
  }
}

async function bootId(): Promise<string> {
  return (await readText('/proc/sys/kernel/random/boot_id')) ?? 'unknown';
}

/** The loop device's backing file (stat), or undefined when it is not a loop device or the file is gone. */
async function loopBacking(dev: string): Promise<{ path: string; dev: bigint; ino: bigint; offset: string; st: import('node:fs').BigIntStats } | undefined> {
  const file = await readText(join(dev, 'loop', 'backing_file'));
  if (file === undefined || file.endsWith(' (deleted)')) return undefined;
  try {
    const st = await stat(file, { bigint: true });
    return { path: file, dev: st.dev, ino: st.ino, offset: (await readText(join(dev, 'loop', 'offset'))) ?? '0', st };
  } catch {
    return undefined;
  }
}

/** A whole disk's stable identity from sysfs (dm uuid, WWID, model+serial), or undefined. */
async function diskIdentity(dev: string): Promise<string | undefined> {
  const dmUuid = await readText(join(dev, 'dm', 'uuid'));
  if (dmUuid !== undefined) return `dm uuid=${dmUuid}`;
  const wwid = (await readText(join(dev, 'wwid'))) ?? (await readText(join(dev, 'device', 'wwid')));
  if (wwid !== undefined) return `wwid=${wwid}`;
  const serial = (await readText(join(dev, 'device', 'serial'))) ?? (await readText(join(dev, 'serial')));
  if (serial !== undefined) return `model=${(await readText(join(dev, 'device', 'model'))) ?? '?'} serial=${serial}`;
  return undefined;
}

function keyOf(description: string): string {
  return createHash('sha256').update(description).digest('hex').slice(0, 24);
}

/**
 * The identity of block device `rdev` (see the file comment), or undefined
 * when none can be established.
 */
export async function deviceIdentityOf(rdev: bigint): Promise<DeviceIdentity | undefined> {
  const dev = await sysDir(rdev);
  if (dev !== undefined) {
    const loop = await loopBacking(dev);
    if (loop) {
      const d = `loop backing-file dev=${loop.dev} ino=${loop.ino} offset=${loop.offset}`;
      return { description: d, key: keyOf(d), perBoot: false };
    }
    const partition = await readText(join(dev, 'partition'));
    let stable: string | undefined;
    if (partition === undefined) stable = await diskIdentity(dev);
    else {
      const disk = await diskIdentity(dirname(dev));
      if (disk !== undefined) stable = `${disk} partition=${partition} start=${(await readText(join(dev, 'start'))) ?? '?'}`;
    }
    if (stable !== undefined) return { description: stable, key: keyOf(stable), perBoot: false };
  }
  const { major, minor } = devMajorMinor(rdev);
  const seq = await readDiskSeq(major, minor);
  if (seq === undefined) return undefined;
  const d = `boot=${await bootId()} devnum=${major}:${minor} diskseq=${seq}`;
  return { description: d, key: keyOf(d), perBoot: true };
}

/** The device's state now, as recorded at commit. */
export async function deviceCommitStat(rdev: bigint, sizeBytes: number): Promise<DeviceCommitStat> {
  const { major, minor } = devMajorMinor(rdev);
  const dev = await sysDir(rdev);
  // /sys/dev/block/M:m/stat: fields 7 (sectors written) and 14 (sectors discarded), 1-based.
  const f = ((dev ? await readText(join(dev, 'stat')) : undefined) ?? '').split(/\s+/);
  const loop = dev ? await loopBacking(dev) : undefined;
  return {
    sizeBytes: String(sizeBytes),
    bootId: await bootId(),
    diskSeq: (await readDiskSeq(major, minor)) ?? '',
    writeSectors: f[6] ?? '',
    discardSectors: f[13] ?? '',
    ...(loop ? { backing: { sizeBytes: String(loop.st.size), mtimeNs: String(loop.st.mtimeNs) } } : {}),
  };
}

export interface DeviceDivergence {
  /** How the device differs from what was recorded at commit; [] when nothing says it changed. */
  why: string[];
  /** Set when the device could not be fully checked (another boot or attachment, and no backing file). */
  unchecked?: string;
}

function nsIso(ns: string): string {
  return new Date(Number(BigInt(ns) / 1_000_000n)).toISOString();
}

/** Compares the device now with its commit stat (see the file comment for what can and cannot be seen). */
export function deviceDivergenceOf(c: DeviceCommitStat, now: DeviceCommitStat): DeviceDivergence {
  const why: string[] = [];
  if (now.sizeBytes !== c.sizeBytes) why.push(`size ${now.sizeBytes} bytes, recorded ${c.sizeBytes}`);
  if (c.backing && now.backing) {
    if (now.backing.sizeBytes !== c.backing.sizeBytes) why.push(`its backing file is ${now.backing.sizeBytes} bytes, recorded ${c.backing.sizeBytes}`);
    if (now.backing.mtimeNs !== c.backing.mtimeNs)
      why.push(`its backing file was modified at ${nsIso(now.backing.mtimeNs)}, after the commit at ${nsIso(c.backing.mtimeNs)}`);
  }
  const sameAttachment = now.bootId === c.bootId && now.diskSeq === c.diskSeq && c.diskSeq !== '';
  if (sameAttachment) {
    const w = BigInt(now.writeSectors || '0') - BigInt(c.writeSectors || '0');
    const d = BigInt(now.discardSectors || '0') - BigInt(c.discardSectors || '0');
    if (w !== 0n) why.push(`${w} sectors were written to it since the commit (kernel I/O counters)`);
    if (d !== 0n) why.push(`${d} sectors were discarded on it since the commit (kernel I/O counters)`);
    return { why };
  }
  if (c.backing && now.backing) return { why };
  return {
    why,
    unchecked: 'the device was re-attached or the host rebooted since the commit, so writes made before that cannot be seen (a raw device keeps no write time)',
  };
}
