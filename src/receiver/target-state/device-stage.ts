/**
 * Atomic apply onto a raw block device, and its record, in the receiver's
 * state directory (see device.ts for the identity and what divergence can be
 * seen):
 *
 *   <stateDir>/targets/device-KEY.json          what the device holds (written atomically)
 *   <stateDir>/targets/device-KEY.undo-OWNER     the undo journal of an apply (undo-journal.ts)
 *
 * A device cannot be staged beside itself: every apply (full or
 * incremental) is written in place behind the undo journal, whose old bytes
 * are durable before each range is overwritten. A full stream therefore
 * journals the old content of the whole volume (the state directory needs
 * that much room; a full disk is a clear error and the device is rolled back).
 * Leftover journals of other owners are rolled back before an apply, at the
 * receiver's start, on AbortTransfer and on expiry.
 */
import { readdir, readFile, rename, unlink, writeFile, open as openFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { constants as fsConstants } from 'node:fs';
import { ThinshipError, asThinshipError } from '../../errors.js';
import { openVolume, type VolumeHandle } from '../../device/volume.js';
import type { TargetRecord } from './record.js';
import { syncDir } from './record.js';
import { deviceCommitStat, deviceDivergenceOf, deviceIdentityOf, type DeviceCommitStat, type DeviceDivergence, type DeviceIdentity } from './device.js';
import { checkRecordRules, type StreamIdentity } from './rules.js';
import { journalStage, openJournal, ownerTag, rollbackJournal, type FileStage, type RecordKeeper, type RecoveryAction } from './staging.js';
import { readJournal } from './undo-journal.js';

/** Where pipe-mode recv and serve keep their state unless told otherwise (--state-dir, the config's stateDir). */
export const DEFAULT_STATE_DIR = '/var/lib/thinship';

/** The state directory's subdirectory of device records and journals. */
function deviceStateDir(stateDir: string): string {
  return join(stateDir, 'targets');
}

function deviceRecordPath(stateDir: string, key: string): string {
  return join(deviceStateDir(stateDir), `device-${key}.json`);
}

function deviceJournalPath(stateDir: string, key: string, owner: string): string {
  return join(deviceStateDir(stateDir), `device-${key}.undo-${ownerTag(owner)}`);
}

const JOURNAL_NAME = /^device-([0-9a-f]{24})\.undo-([0-9a-f]{16})$/;

/** What a device holds, as its record file says. */
export interface StoredDeviceRecord {
  format: 1;
  /** The identity description the key was made from (device.ts). */
  identity: string;
  /** The device's path when it was last written (informative: the identity decides). */
  device: string;
  record: TargetRecord;
  commit: DeviceCommitStat;
}

/** The record of the device with identity `id`; undefined when it has none. Garbage is BAD_METADATA naming the file. */
async function readDeviceRecord(stateDir: string, id: DeviceIdentity): Promise<StoredDeviceRecord | undefined> {
  const file = deviceRecordPath(stateDir, id.key);
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ThinshipError('IO_ERROR', `the device target record ${file} cannot be read: ${(e as Error).message}`, { cause: e });
  }
  const bad = (why: string) =>
    new ThinshipError(
      'BAD_METADATA',
      `the device target record ${file} ${why}; nothing was written (move the file away to start over: the device then has no record, and an incremental needs --force)`,
      { details: { file } },
    );
  let r: StoredDeviceRecord;
  try {
    r = JSON.parse(raw) as StoredDeviceRecord;
  } catch (e) {
    throw bad(`is not JSON (${(e as Error).message})`);
  }
  if (r === null || typeof r !== 'object' || r.format !== 1) throw bad('is not a thinship format-1 device record');
  if (typeof r.record?.sourceId !== 'string' || typeof r.record.digest !== 'string' || typeof r.record.receivedUnixMs !== 'number')
    throw bad('has no valid "record" (sourceId, digest, receivedUnixMs)');
  if (typeof r.commit?.sizeBytes !== 'string' || typeof r.commit.writeSectors !== 'string' || typeof r.commit.bootId !== 'string')
    throw bad('has no valid "commit" (sizeBytes, writeSectors, bootId)');
  if (r.identity !== id.description) throw bad(`names the identity "${String(r.identity)}", not this device's "${id.description}"`);
  return r;
}

/** Writes the record atomically: a temporary file, fsync, rename, fsync of the directory. */
async function writeDeviceRecord(stateDir: string, rec: StoredDeviceRecord, key: string): Promise<void> {
  const file = deviceRecordPath(stateDir, key);
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(rec), { mode: 0o600 });
  const fh = await openFile(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  await syncDir(deviceStateDir(stateDir));
}

function deviceKeeper(stateDir: string, id: DeviceIdentity, target: VolumeHandle, rdev: bigint): RecordKeeper {
  const write = async (record: TargetRecord) => {
    // After the data is durable (the stage flushed it): the counters then include every write of ours.
    await target.flush();
    const commit = await deviceCommitStat(rdev, target.sizeBytes);
    await writeDeviceRecord(stateDir, { format: 1, identity: id.description, device: target.path, record, commit }, id.key);
    return undefined;
  };
  return {
    write,
    remove: async () => {
      await unlink(deviceRecordPath(stateDir, id.key)).catch(() => undefined);
    },
    rerecord: async () => {
      const r = await readDeviceRecord(stateDir, id).catch(() => undefined);
      if (r) await write(r.record);
    },
    syncDirs: () => syncDir(deviceStateDir(stateDir)),
  };
}

/** The device open as `target` (st_rdev `rdev`): its identity, or the refusal when it has none. */
export async function requireDeviceIdentity(rdev: bigint, targetName: string): Promise<DeviceIdentity> {
  const id = await deviceIdentityOf(rdev);
  if (id === undefined) {
    throw new ThinshipError(
      'USAGE',
      `target ${targetName}: no identity could be read for this block device (no loop backing file, dm uuid, WWID or serial in sysfs, and no disk sequence number: a kernel before 5.15), so the receiver can neither record what it holds nor journal an apply onto it; nothing was written`,
      { details: { target: targetName } },
    );
  }
  return id;
}

export interface DeviceState {
  identity: DeviceIdentity;
  /** The record file (whether or not it exists). */
  file: string;
  record: StoredDeviceRecord | undefined;
  divergence: DeviceDivergence;
  /** Undo journals of this device in the state directory (an apply in progress, resumable, or interrupted). */
  staged: string[];
}

/** What a device holds and whether it diverged (target show, GetTarget, and the checks before an apply). */
export async function inspectDevice(stateDir: string, rdev: bigint, sizeBytes: number, targetName: string): Promise<DeviceState> {
  const identity = await requireDeviceIdentity(rdev, targetName);
  const record = await readDeviceRecord(stateDir, identity);
  const divergence = record ? deviceDivergenceOf(record.commit, await deviceCommitStat(rdev, sizeBytes)) : { why: [] };
  let names: string[] = [];
  try {
    names = await readdir(deviceStateDir(stateDir));
  } catch {
    /* no state yet */
  }
  const staged = names.filter((n) => JOURNAL_NAME.exec(n)?.[1] === identity.key).map((n) => join(deviceStateDir(stateDir), n));
  return { identity, file: deviceRecordPath(stateDir, identity.key), record, divergence, staged };
}

export interface OpenDeviceStageOptions {
  stateDir: string;
  /** The name the target was given (messages). */
  targetName: string;
  /** The device, open for writing with O_EXCL (nobody else writes it meanwhile). */
  target: VolumeHandle;
  rdev: bigint;
  stream: StreamIdentity & { volumeSizeBytes?: number };
  /** 'pipe', or the gRPC transfer's identity and id. */
  owner: string;
  /** Continue this owner's journal (a resumed gRPC transfer): the checks were made when it began. */
  resume: boolean;
  force: boolean;
  grow: boolean;
  /** Said to the operator (stderr / log). */
  warn: (msg: string) => void;
  /** Told what was rolled back first. */
  recovered: (a: RecoveryAction) => void;
}

/**
 * Before the first byte onto a device: leftovers of other applies rolled
 * back, then (a new apply) the size, base and divergence rules against the
 * record in the state directory; returns the journal stage the stream is
 * written through. Every refusal comes before anything is written.
 */
export async function openDeviceStage(o: OpenDeviceStageOptions): Promise<FileStage> {
  const id = await requireDeviceIdentity(o.rdev, o.targetName);
  for (const a of await recoverDeviceJournals(o.stateDir, { key: id.key, keepOwner: o.resume ? o.owner : undefined, open: { handle: o.target, rdev: o.rdev } }))
    o.recovered(a);
  const state = await inspectDevice(o.stateDir, o.rdev, o.target.sizeBytes, o.targetName);
  if (!o.resume) {
    const want = o.stream.volumeSizeBytes;
    if (want !== undefined && o.target.sizeBytes < want) {
      throw new ThinshipError(
        'TARGET_TOO_SMALL',
        `the stream is for a volume of ${want} bytes but target ${o.targetName} has only ${o.target.sizeBytes} bytes (a block device); nothing was written${o.grow ? ' (--grow cannot grow a block device: grow it first, e.g. losetup -c after extending its backing file, or lvextend)' : ''}`,
        { details: { target: o.targetName, sizeBytes: o.target.sizeBytes, wantedBytes: want } },
      );
    }
    if (state.record && state.divergence.unchecked) o.warn(`target ${o.targetName}: divergence not fully checked: ${state.divergence.unchecked}`);
    const rules = checkRecordRules(o.stream, state.record?.record, state.divergence.why, { force: o.force });
    for (const w of rules.warnings) o.warn(w);
  }
  await mkdir(deviceStateDir(o.stateDir), { recursive: true, mode: 0o700 });
  const journal = await openJournal(deviceJournalPath(o.stateDir, id.key, o.owner), o.resume, {
    owner: o.owner,
    ino: '',
    dev: '',
    originalSizeBytes: o.target.sizeBytes,
    restoreRecord: state.record !== undefined && state.divergence.why.length === 0,
    device: { path: o.target.path, identity: id.description, key: id.key },
  });
  return journalStage(o.target, journal, deviceKeeper(o.stateDir, id, o.target, o.rdev));
}

export interface DeviceRecoveryFilter {
  /** Only journals of this device (by identity key). */
  key?: string;
  /** Not this owner's (a resuming transfer continues it). */
  keepOwner?: string;
  /** Only this owner's (AbortTransfer, expiry). */
  onlyOwner?: string;
  /** Not these owners' (resumable transfers, by ownerTag). */
  keepTags?: ReadonlySet<string>;
  /** The device, already open (O_EXCL) by the caller: used instead of opening the journal's path. */
  open?: { handle: VolumeHandle; rdev: bigint };
}

/**
 * Rolls back the device journals in the state directory that the filter
 * selects (or finishes their commit, if it had begun). A journal whose device
 * is not at its recorded path now (detached, replaced, busy) is kept and
 * reported as 'journal-kept': it is rolled back when that device is next a
 * target, or at a later start.
 */
export async function recoverDeviceJournals(stateDir: string, f: DeviceRecoveryFilter): Promise<RecoveryAction[]> {
  let names: string[];
  try {
    names = await readdir(deviceStateDir(stateDir));
  } catch {
    return [];
  }
  const keep = f.keepOwner === undefined ? undefined : ownerTag(f.keepOwner);
  const only = f.onlyOwner === undefined ? undefined : ownerTag(f.onlyOwner);
  const done: RecoveryAction[] = [];
  for (const n of names.sort()) {
    const m = JOURNAL_NAME.exec(n);
    if (!m || (f.key !== undefined && m[1] !== f.key) || m[2] === keep || (only !== undefined && m[2] !== only) || f.keepTags?.has(m[2]!)) continue;
    const file = join(deviceStateDir(stateDir), n);
    let opened: { handle: VolumeHandle; rdev: bigint; mine: boolean } | undefined;
    try {
      const j = await readJournal(file);
      const dev = j.header.device;
      if (!dev) throw new ThinshipError('BAD_METADATA', `undo journal ${file}: its header names no device`);
      if (f.open) opened = { ...f.open, mine: false };
      else {
        const handle = await openVolume(dev.path, { mode: 'write', exclusive: true });
        const st = await handle.stat();
        opened = { handle, rdev: st.rdev, mine: true };
        const id = st.isBlockDevice() ? await deviceIdentityOf(st.rdev) : undefined;
        if (id?.key !== m[1]) {
          done.push({ file, action: 'journal-kept', why: `${dev.path} is not the device the journal belongs to now (${dev.identity})` });
          continue;
        }
      }
      const id = (await deviceIdentityOf(opened.rdev))!;
      const r = await rollbackJournal(file, opened.handle, deviceKeeper(stateDir, id, opened.handle, opened.rdev));
      done.push({ file, action: r.committed ? 'commit-finished' : 'rolled-back' });
    } catch (e) {
      done.push({ file, action: 'journal-kept', why: asThinshipError(e).message });
    } finally {
      if (opened?.mine) await opened.handle.close().catch(() => undefined);
    }
  }
  return done;
}

/** Whether `path` is a block device (pipe-mode recv and target show choose the device rules by it). */
export async function isBlockDevicePath(path: string): Promise<boolean> {
  try {
    const fh = await openFile(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    try {
      return (await fh.stat()).isBlockDevice();
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
}
