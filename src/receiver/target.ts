/**
 * Resolving a receive TARGET: an LVM LV (`vg/lv`), or a file or block-device
 * path. Paths are recognised by a leading `/` or `.`, or by existing as a file;
 * anything else of the form `vg/lv` is an LVM name.
 *
 * The gRPC receiver's file and device targets (authorised by access.ts; LVs are
 * staged instead: target-state/lvm-stage.ts) are opened by
 * openTransferTarget below, race-free; pipe-mode `recv` opens the path its
 * local user named with openVolume.
 */
import { closeSync, constants as fsConstants, existsSync, fstatSync, open as fsOpen, type BigIntStats } from 'node:fs';
import { promisify } from 'node:util';
import { dirname } from 'node:path';
import { ThinshipError } from '../errors.js';
import { runTool } from '../exec/run.js';
import { classifyLvm } from '../exec/known-errors.js';
import { looksLikeLvName, parseLvName, lvDevicePath } from '../thin/names.js';
import { resolveThinVolume } from '../thin/lvm.js';
import { openVolumeFd, type VolumeHandle } from '../device/volume.js';
import { nativeDevice } from '../device/native.js';
import { devMajorMinor, readDiskSeq } from '../device/block-info.js';
import type { AllowedTarget } from './access.js';

export type TargetSpec = { kind: 'lvm'; vg: string; lv: string; name: string } | { kind: 'path'; path: string; name: string };

export function parseTargetName(name: string): TargetSpec {
  if (name.startsWith('/') || name.startsWith('.') || existsSync(name)) return { kind: 'path', path: name, name };
  if (looksLikeLvName(name)) {
    const n = parseLvName(name);
    return { kind: 'lvm', ...n, name };
  }
  return { kind: 'path', path: name, name };
}

export interface ResolvedTarget {
  path: string;
  /** Undo what resolving did (deactivate an LV we activated). */
  release(): Promise<void>;
}

/** Finds the device of an LVM target, activating it if it is inactive. */
export async function resolveTarget(t: TargetSpec, opts: { signal?: AbortSignal } = {}): Promise<ResolvedTarget> {
  if (t.kind === 'path') return { path: t.path, release: async () => undefined };
  const v = await resolveThinVolume(`${t.vg}/${t.lv}`, opts).catch((e: unknown) => {
    if ((e as ThinshipError).code === 'NOT_THIN')
      throw new ThinshipError('NOT_THIN', `target ${t.name} is not a thin volume: thinship receives into thin LVs so that discards free pool space`);
    // `recv dir/file.img` for a file not made yet reads as vg/lv; say how to mean the file.
    if ((e as ThinshipError).code === 'NOT_FOUND' && existsSync(t.vg)) {
      throw new ThinshipError(
        'NOT_FOUND',
        `${(e as Error).message}; target ${t.name} was read as an LVM name (vg/lv), but ${t.vg} exists here: to receive into a file, write ./${t.name}`,
        { cause: e },
      );
    }
    throw e;
  });
  if (v.active) return { path: lvDevicePath(v.vg, v.lv), release: async () => undefined };
  await runTool('lvchange', ['-ay', '-K', `${v.vg}/${v.lv}`], { ...opts, classify: classifyLvm });
  return {
    path: lvDevicePath(v.vg, v.lv),
    release: async () => {
      await runTool('lvchange', ['-an', `${v.vg}/${v.lv}`], { classify: classifyLvm });
    },
  };
}

// ---- the gRPC receiver's targets ---------------------------------------------------

/** openBeneath's signature: the openat2 resolver, or (tests) the O_NOFOLLOW walk alone. */
export type BeneathOpener = (dirFd: number, relativePath: string, flags: number, mode: number) => number;

export interface OpenTargetOptions {
  /** Files are grown (sparsely) to this size. */
  volumeSizeBytes: number;
  /** Set when the target must already exist (an incremental, a resume): why, for the NOT_FOUND. Unset: a missing file is created. */
  mustExist?: string;
  /** Tests: resolve with the O_NOFOLLOW walk instead of openat2. */
  openBeneath?: BeneathOpener;
}

export interface OpenedTarget {
  handle: VolumeHandle;
  /** What was opened (see targetIdentity), recorded in the checkpoint. */
  identity: string;
  /** A file target that did not exist and was created (empty) by this open. */
  created?: boolean;
  /** Undo what opening did (deactivate an LV we activated). */
  release: () => Promise<void>;
}

const openFd = promisify(fsOpen);
const NO_RELEASE = async (): Promise<void> => undefined;

function errnoOf(e: unknown): string {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : '';
}

function refused(t: AllowedTarget, why: string, errno?: string): ThinshipError {
  return new ThinshipError('PERMISSION_DENIED', `target ${t.name}: ${why}; nothing was written`, { details: { target: t.name, errno } });
}

/** An open or resolve failure of a path target, as the error the sender should see. */
function openError(t: AllowedTarget, e: unknown, what: string): ThinshipError {
  const errno = errnoOf(e);
  const details = { target: t.name, errno };
  switch (errno) {
    case 'ELOOP':
      return refused(t, `a component of its path is a symbolic link (${what})`, errno);
    case 'ENOTDIR':
      return refused(t, `a component of its path is not a directory or is a symbolic link (${what})`, errno);
    case 'EXDEV':
      return refused(t, `its path leaves the allowed directory (${what})`, errno);
    case 'EACCES':
    case 'EPERM':
      return refused(t, `the file system refuses it (${errno}, ${what})`, errno);
    case 'EBUSY':
      return new ThinshipError('TARGET_BUSY', `target ${t.name} is in use (mounted or held open exclusively)`, { details, cause: e });
    case 'ENOENT':
      return new ThinshipError('NOT_FOUND', `target ${t.name} does not exist (${what})`, { details, cause: e });
    case 'ENXIO':
    case 'ENODEV':
      return new ThinshipError('NOT_FOUND', `target ${t.name}: no such device behind this node (${errno}; e.g. a detached loop device)`, { details, cause: e });
    default:
      return new ThinshipError('IO_ERROR', `target ${t.name}: ${what} failed: ${e instanceof Error ? e.message : String(e)}`, {
        details,
        retryable: errno === 'EAGAIN' || errno === 'EINTR',
        cause: e,
      });
  }
}

function kindOf(st: BigIntStats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isBlockDevice()) return `the block device ${devName(st.rdev)}`;
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

function devName(rdev: bigint): string {
  const { major, minor } = devMajorMinor(rdev);
  return `${major}:${minor}`;
}

/**
 * What a target is, as a string compared for equality: a file's device,
 * inode, birth time and size; a block device's number, disk sequence (a
 * loop device attached to another file gets a new one) and size; an LV's
 * uuid. A target deleted and re-created, or replaced, compares unequal.
 */
export async function targetIdentity(st: BigIntStats, sizeBytes: number): Promise<string> {
  if (st.isBlockDevice()) {
    const { major, minor } = devMajorMinor(st.rdev);
    return `block ${major}:${minor} seq=${(await readDiskSeq(major, minor)) ?? '?'} size=${sizeBytes}`;
  }
  return `file dev=${st.dev} ino=${st.ino} born=${st.birthtimeNs} size=${sizeBytes}`;
}

/** An LV target's identity (see targetIdentity): its LV uuid. */
export function lvmIdentity(uuid: string): string {
  return `lvm uuid=${uuid}`;
}

/** fstat of an fd the caller still owns; closes it on failure. */
function fstatOrClose(fd: number, t: AllowedTarget): BigIntStats {
  try {
    return fstatSync(fd, { bigint: true });
  } catch (e) {
    closeSync(fd);
    throw openError(t, e, 'fstat');
  }
}

/** The allowed directory itself, by its configured real path (no symlink at its last component). */
async function openAllowedDir(t: Extract<AllowedTarget, { kind: 'path' }>): Promise<number> {
  try {
    return await openFd(t.dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT')
      throw new ThinshipError('NOT_FOUND', `target ${t.name}: the allowed directory ${t.dir} no longer exists`, {
        details: { target: t.name, dir: t.dir },
        cause: e,
      });
    throw openError(t, e, `open of the allowed directory ${t.dir}`);
  }
}

/**
 * The directory a file target is in, opened beneath its allowed directory
 * with no symlink in any component (its staging file is created through it:
 * target-state/staging.ts). The caller closes the fd.
 */
export async function openTargetDirectory(t: Extract<AllowedTarget, { kind: 'path' }>): Promise<number> {
  const dirFd = await openAllowedDir(t);
  const rel = dirname(t.rel);
  if (rel === '.') return dirFd;
  try {
    return nativeDevice().openBeneath(dirFd, rel, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY, 0);
  } catch (e) {
    throw openError(t, e, `open of its directory beneath ${t.dir}`);
  } finally {
    closeSync(dirFd);
  }
}

/**
 * Opens a file target beneath its allowed directory: no symlink in any
 * component, never outside the directory, a missing file created with
 * O_EXCL (never through whatever appears at its name). Returns the fd, and
 * whether it was created.
 */
function openBeneathDir(t: Extract<AllowedTarget, { kind: 'path' }>, dirFd: number, o: OpenTargetOptions): { fd: number; created: boolean } {
  const native = nativeDevice();
  const beneath = o.openBeneath ?? native.openBeneath.bind(native);
  const flags = fsConstants.O_RDWR | fsConstants.O_NOCTTY;
  // Each pass: open what is there, else create it exclusively; a name that appears in
  // between (EEXIST) is opened and checked like any other on the next pass.
  for (let pass = 0; ; pass++) {
    try {
      return { fd: beneath(dirFd, t.rel, flags, 0), created: false };
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw openError(t, e, `open beneath ${t.dir}`);
      if (o.mustExist !== undefined)
        throw new ThinshipError('NOT_FOUND', `target ${t.name} does not exist: ${o.mustExist}`, { details: { target: t.name }, cause: e });
    }
    try {
      return { fd: beneath(dirFd, t.rel, flags | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600), created: true };
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST' || pass >= 2) throw openError(t, e, `create beneath ${t.dir}`);
    }
  }
}

/**
 * Opens an authorised target for writing, enforcing at the open what
 * authorizeTarget decided (see access.ts): nothing changed since — a path
 * component swapped for a symlink, a hard link to a file elsewhere, another
 * device node at a listed path — can make it write anything else.
 */
export async function openTransferTarget(t: AllowedTarget, o: OpenTargetOptions): Promise<OpenedTarget> {
  // An LV is never written in place: the stream goes to a staging LV (target-state/transfer-hooks.ts openLvmTransferStage).
  if (t.kind === 'lvm') throw new ThinshipError('USAGE', `target ${t.name} is an LV: it is applied through a staging LV, not opened here`);
  if (t.kind === 'device') {
    let fd: number;
    try {
      // O_EXCL: refused while mounted or held by someone else, and nobody mounts it while we write.
      fd = await openFd(t.realPath, fsConstants.O_RDWR | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW | fsConstants.O_NOCTTY);
    } catch (e) {
      throw openError(t, e, `open of ${t.realPath}`);
    }
    const st = fstatOrClose(fd, t);
    if (!st.isBlockDevice() || st.rdev !== t.rdev) {
      closeSync(fd);
      throw refused(
        t,
        `${t.realPath} is now ${kindOf(st)}, not the block device ${devName(t.rdev)} it was when the receiver read its configuration (restart the receiver if it was re-created on purpose)`,
      );
    }
    const handle = await openVolumeFd(fd, t.realPath, { mode: 'write' });
    return { handle, identity: await targetIdentity(st, handle.sizeBytes), release: NO_RELEASE };
  }

  const dirFd = await openAllowedDir(t);
  let opened: { fd: number; created: boolean };
  try {
    opened = openBeneathDir(t, dirFd, o);
  } finally {
    closeSync(dirFd);
  }
  const { fd } = opened;
  const st = fstatOrClose(fd, t);
  if (!st.isFile()) {
    closeSync(fd);
    if (st.isBlockDevice()) throw refused(t, `it is ${kindOf(st)} inside an allowed directory; block devices must be listed one by one under "devices"`);
    throw new ThinshipError('USAGE', `target ${t.name} is ${kindOf(st)}; a target must be a regular file, a listed block device or an LV`, {
      details: { target: t.name },
    });
  }
  if (st.nlink !== 1n) {
    closeSync(fd);
    if (st.nlink === 0n)
      throw new ThinshipError('NOT_FOUND', `target ${t.name} was removed while it was being opened`, { details: { target: t.name }, retryable: true });
    // Another name for the same file may be anywhere on this file system, outside the allowed directory.
    throw refused(t, `it has ${st.nlink} hard links, and a file reachable under other names (possibly outside ${t.dir}) is not written`);
  }
  const handle = await openVolumeFd(fd, t.realPath, { mode: 'write' });
  try {
    // Not sized here: the stream is written to a staging file of the volume size, renamed over this one at commit, or
    // (incremental) an existing smaller one is refused or grown (--grow) by its stage (target-state/).
    return { handle, identity: await targetIdentity(await handle.stat(), handle.sizeBytes), release: NO_RELEASE, created: opened.created };
  } catch (e) {
    await handle.close().catch(() => undefined);
    throw e;
  }
}

/**
 * The identity of what the target names now (see targetIdentity), opening it
 * read-only the same way openTransferTarget would; undefined when it does not
 * exist. A target that cannot be opened at all gets a description instead,
 * which matches no recorded identity.
 */
export async function currentTargetIdentity(t: AllowedTarget, o: { openBeneath?: BeneathOpener } = {}): Promise<string | undefined> {
  if (t.kind === 'lvm') {
    try {
      return lvmIdentity((await resolveThinVolume(`${t.vg}/${t.lv}`)).uuid);
    } catch (e) {
      if ((e as ThinshipError).code === 'NOT_FOUND') return undefined;
      throw e;
    }
  }
  // O_NONBLOCK: a FIFO put at the name must not hang the query.
  const flags = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY;
  let fd: number;
  try {
    if (t.kind === 'device') {
      fd = await openFd(t.realPath, flags | fsConstants.O_NOFOLLOW);
    } else {
      const dirFd = await openAllowedDir(t);
      try {
        fd = (o.openBeneath ?? nativeDevice().openBeneath)(dirFd, t.rel, flags, 0);
      } finally {
        closeSync(dirFd);
      }
    }
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === 'ENOENT' || errno === 'ENXIO' || errno === 'ENODEV' || (e as ThinshipError).code === 'NOT_FOUND') return undefined;
    return `unopenable (${errno || (e as ThinshipError).code})`;
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    if (st.isFile()) return await targetIdentity(st, Number(st.size));
    if (st.isBlockDevice()) return await targetIdentity(st, nativeDevice().blockSizeBytes(fd));
    return kindOf(st);
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens an authorised file or device target read-only the way
 * openTransferTarget would (beneath its allowed directory with no symlink in
 * any component; a device only while it is still the device the rules
 * named), for GetTarget. Returns the fd (the caller closes it), or undefined
 * when the target does not exist.
 */
export async function openTargetForReading(t: Exclude<AllowedTarget, { kind: 'lvm' }>): Promise<number | undefined> {
  const flags = fsConstants.O_RDONLY | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY;
  let fd: number;
  try {
    if (t.kind === 'device') fd = await openFd(t.realPath, flags | fsConstants.O_NOFOLLOW);
    else {
      const dirFd = await openAllowedDir(t);
      try {
        fd = nativeDevice().openBeneath(dirFd, t.rel, flags, 0);
      } finally {
        closeSync(dirFd);
      }
    }
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === 'ENOENT' || errno === 'ENXIO' || errno === 'ENODEV' || (e as ThinshipError).code === 'NOT_FOUND') return undefined;
    throw openError(t, e, 'open for reading');
  }
  const st = fstatOrClose(fd, t);
  if (t.kind === 'device' && (!st.isBlockDevice() || st.rdev !== t.rdev)) {
    closeSync(fd);
    throw refused(t, `${t.realPath} is now ${kindOf(st)}, not the block device ${devName(t.rdev)} it was when the receiver read its configuration`);
  }
  if (t.kind === 'path' && !st.isFile()) {
    closeSync(fd);
    throw new ThinshipError('USAGE', `target ${t.name} is ${kindOf(st)}; a target must be a regular file, a listed block device or an LV`, {
      details: { target: t.name },
    });
  }
  return fd;
}
