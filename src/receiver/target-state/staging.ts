/**
 * Atomic apply onto a file target: the live target moves from one complete
 * received snapshot to the next in one step.
 *
 *   full stream   → a new sparse file beside the target (`.NAME.thinship-staging-OWNER`),
 *                   renamed over the target at commit (after fsync of the file and the directory)
 *   incremental   → FICLONE of the target into that staging file where the file system has
 *                   reflinks, renamed likewise; elsewhere written in place behind an undo
 *                   journal (`.NAME.thinship-undo-OWNER`, undo-journal.ts)
 *
 * OWNER is a hash of who applies (pipe mode, or a gRPC transfer): a resumed
 * transfer continues into its own staging or journal; anything else left
 * beside a target is rolled back (recoverFileTarget) before a new apply and
 * at the receiver's start.
 */
import { targetStateSettings } from './record.js';
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, fsync, ftruncate, openSync, constants as fsConstants } from 'node:fs';
import { promisify } from 'node:util';
import { readdir, rename, unlink, stat, open as openFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { openVolume, openVolumeFd, type VolumeHandle } from '../../device/volume.js';
import { nativeDevice } from '../../device/native.js';
import { UndoJournal, readJournal, readOldBytes, type JournalHeader } from './undo-journal.js';
import { pruneSidecar, readFileRecord, removeFileRecord, syncDir, writeFileRecord, type StoredRecord, type TargetRecord } from './record.js';

export type StageKind = 'new-file' | 'reflink' | 'journal';

/** Old bytes are saved and written back in pieces of at most this many bytes. */
const JOURNAL_PIECE_BYTES = 4 * 1024 * 1024;

export function ownerTag(owner: string): string {
  return createHash('sha256').update(owner).digest('hex').slice(0, 16);
}

export function stagingPath(targetPath: string, owner: string): string {
  return join(dirname(targetPath), `.${basename(targetPath)}.thinship-staging-${ownerTag(owner)}`);
}

export function journalPath(targetPath: string, owner: string): string {
  return join(dirname(targetPath), `.${basename(targetPath)}.thinship-undo-${ownerTag(owner)}`);
}

export interface OpenStageOptions {
  targetPath: string;
  /** The target, open for writing; undefined when it does not exist yet (a full stream creates it). */
  target: VolumeHandle | undefined;
  /** 'full': the stream replaces the whole volume (it says its size); 'in-place': incremental or a plain LINBIT stream. */
  mode: 'full' | 'in-place';
  volumeSizeBytes: number | undefined;
  /** 'pipe', or the gRPC transfer's identity and id. */
  owner: string;
  /** Continue the staging or journal this owner left (a resumed gRPC transfer). */
  resume: boolean;
  /** Extend a target smaller than the volume (else the caller refused it before). */
  grow: boolean;
  /** The target holds its record and has not diverged: a rollback of the journal re-records it. */
  recordIsClean?: boolean;
  /**
   * Opens the target's directory (the caller closes nothing: the stage owns the fd). The
   * gRPC receiver opens it beneath the allowed directory with no symlink in any component;
   * default: by path (pipe mode: the local user named it).
   */
  openDir?: () => Promise<number>;
  /** Tests and file systems that lie about reflinks: never try FICLONE (THINSHIP_STAGING=journal does the same). */
  noReflink?: boolean;
}

export interface FileStage {
  kind: StageKind;
  /** Where the stream's records are written. */
  handle: VolumeHandle;
  /** Makes the staged data the target, with its record; the target is the new snapshot once this returns. */
  commit(record: TargetRecord | undefined): Promise<StoredRecord | undefined>;
  /** Puts the target back as it was and removes the staging or journal. */
  rollback(): Promise<void>;
  /** Closes without deciding (a resumable transfer keeps its staging or journal). */
  close(): Promise<void>;
}

function fdOf(h: VolumeHandle): number {
  return h.fd;
}

/** fsync (not fdatasync): the record's extended attributes are metadata. */
const fsyncFd = promisify(fsync);
const ftruncateFd = promisify(ftruncate);

export async function openFileStage(o: OpenStageOptions): Promise<FileStage> {
  const sp = stagingPath(o.targetPath, o.owner);
  const jp = journalPath(o.targetPath, o.owner);
  const exists = async (p: string) =>
    stat(p).then(
      () => true,
      () => false,
    );

  if (o.mode === 'full' || (o.target !== undefined && !o.noReflink && !targetStateSettings.forceJournal)) {
    // A staging file: new (full), or a reflink of the target (incremental). Created and renamed
    // through a descriptor of the target's directory, so that nothing swapped in at a path
    // component since the target was opened can send it elsewhere.
    const dirFd = o.openDir ? await o.openDir() : openSync(dirname(o.targetPath), fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    const inDir = (name: string) => `/proc/self/fd/${dirFd}/${name}`;
    const spName = basename(sp);
    const closeDir = () => {
      try {
        closeSync(dirFd);
      } catch {
        /* closed already */
      }
    };
    let handle: VolumeHandle | undefined;
    let kind: StageKind = o.mode === 'full' ? 'new-file' : 'reflink';
    try {
      if (o.resume && (await exists(inDir(spName)))) {
        handle = await openVolumeFd(openStagingFile(dirFd, spName, sp, false), sp, { mode: 'write' });
      } else {
        await unlink(inDir(spName)).catch(() => undefined);
        handle = await openVolumeFd(openStagingFile(dirFd, spName, sp, true), sp, { mode: 'write' });
        if (kind === 'reflink') {
          try {
            nativeDevice().ficlone(fdOf(handle), fdOf(o.target!));
          } catch (e) {
            await handle.close().catch(() => undefined);
            await unlink(inDir(spName)).catch(() => undefined);
            const errno = (e as { code?: string }).code;
            if (errno !== 'EOPNOTSUPP' && errno !== 'ENOTSUP' && errno !== 'EXDEV' && errno !== 'EINVAL' && errno !== 'ENOTTY') throw e;
            handle = undefined; // no reflinks here: fall through to the journal
          }
        }
      }
    } catch (e) {
      closeDir();
      throw e;
    }
    if (handle === undefined) closeDir();
    else {
      const h = handle;
      const want = o.volumeSizeBytes ?? o.target?.sizeBytes ?? 0;
      if (h.sizeBytes < want) await h.extendTo(want);
      return {
        kind,
        handle: h,
        commit: async (record) => {
          try {
            await h.flush();
            const targetIno = o.target ? String((await o.target.stat()).ino) : undefined;
            const stored = record ? await writeFileRecord(fdOf(h), o.targetPath, record, { keepInode: targetIno }) : undefined;
            await fsyncFd(fdOf(h));
            await h.close();
            await rename(inDir(spName), inDir(basename(o.targetPath)));
            await fsyncFd(dirFd);
            if (stored?.store === 'sidecar') await pruneSidecar(o.targetPath, stored.commit.ino);
            return stored;
          } finally {
            closeDir();
          }
        },
        rollback: async () => {
          await h.close().catch(() => undefined);
          await unlink(inDir(spName)).catch(() => undefined);
          closeDir();
        },
        close: async () => {
          await h.close().catch(() => undefined);
          closeDir();
        },
      };
    }
    kind = 'journal';
  }

  // In place behind an undo journal.
  const target = o.target;
  if (target === undefined)
    throw new ThinshipError('NOT_FOUND', `target ${o.targetPath} does not exist: an incremental stream applies only to a target holding its base`);
  const st = fstatSync(fdOf(target), { bigint: true });
  const journal = await openJournal(
    jp,
    o.resume,
    { owner: o.owner, ino: String(st.ino), dev: String(st.dev), originalSizeBytes: target.sizeBytes, restoreRecord: o.recordIsClean === true },
    o.openDir,
  );
  const want = o.volumeSizeBytes ?? 0;
  if (o.grow && target.sizeBytes < want) await target.extendTo(want);
  return journalStage(target, journal, fileRecordKeeper(target, o.targetPath));
}

/** What a journal stage records on commit and after a rollback: on the file (record.ts) or in the state directory (device-stage.ts). */
export interface RecordKeeper {
  /** Records what the target holds now (its data is durable). */
  write(record: TargetRecord): Promise<StoredRecord | undefined>;
  /** The target holds nothing known any more (a plain LINBIT stream was applied). */
  remove(): Promise<void>;
  /** Rolled back to exactly the recorded snapshot, but the writes moved its stat: record that again. */
  rerecord(): Promise<void>;
  /** Makes the keeper's and the journal's directory entries durable. */
  syncDirs(): Promise<void>;
}

function fileRecordKeeper(target: VolumeHandle, targetPath: string): RecordKeeper {
  return {
    write: async (record) => {
      const stored = await writeFileRecord(fdOf(target), targetPath, record);
      await fsyncFd(fdOf(target));
      return stored;
    },
    remove: async () => {
      await removeFileRecord(fdOf(target), targetPath);
      await fsyncFd(fdOf(target));
    },
    rerecord: async () => {
      const rec = await readFileRecord(fdOf(target), targetPath).catch(() => undefined);
      if (rec) await writeFileRecord(fdOf(target), targetPath, rec.record);
      await fsyncFd(fdOf(target));
    },
    syncDirs: () => syncDir(dirname(targetPath)),
  };
}

/** A new journal (its directory entry made durable), or this owner's to continue (resume). */
export async function openJournal(jp: string, resume: boolean, header: JournalHeader, openDir?: () => Promise<number>): Promise<UndoJournal> {
  const exists = await stat(jp).then(
    () => true,
    () => false,
  );
  if (resume && exists) return UndoJournal.reopen(jp);
  // openDir: the journal is made through a descriptor of its directory (opened race-free by the caller), not by path.
  const dirFd = openDir ? await openDir() : undefined;
  try {
    const at = dirFd === undefined ? jp : `/proc/self/fd/${dirFd}/${basename(jp)}`;
    await unlink(at).catch(() => undefined);
    const journal = await UndoJournal.create(jp, header, { createAt: at });
    if (dirFd === undefined) await syncDir(dirname(jp));
    else await fsyncFd(dirFd);
    return journal;
  } finally {
    if (dirFd !== undefined) closeSync(dirFd);
  }
}

/**
 * The stage of a target written in place: every write and zeroing first
 * saves the bytes it replaces in `journal`; commit marks the journal
 * committed, records, and deletes it; rollback writes the old bytes back.
 */
export function journalStage(target: VolumeHandle, journal: UndoJournal, keeper: RecordKeeper): FileStage {
  const originalSize = journal.header.originalSizeBytes;
  const saveOld = async (offsetBytes: number, lengthBytes: number) => {
    // Beyond the original size there is nothing to save: rollback truncates there.
    const end = Math.min(offsetBytes + lengthBytes, originalSize);
    for (let p = offsetBytes; p < end; p += JOURNAL_PIECE_BYTES) {
      const n = Math.min(JOURNAL_PIECE_BYTES, end - p);
      const buf = Buffer.alloc(n);
      const got = await target.readAt(buf, p, n);
      await journal.saveOld(p, buf.subarray(0, got));
    }
  };
  // The journal sits between the stream and the target: every write and zeroing saves what it replaces first.
  const writeAt = target.writeAt.bind(target);
  const makeZero = target.makeZero.bind(target);
  target.writeAt = async (buf, off) => {
    await saveOld(off, buf.byteLength);
    return writeAt(buf, off);
  };
  target.makeZero = async (off, len) => {
    await saveOld(off, len);
    return makeZero(off, len);
  };
  return {
    kind: 'journal',
    handle: target,
    commit: async (record) => {
      await target.flush();
      let stored: StoredRecord | undefined;
      if (record) {
        await journal.markCommitted(record);
        stored = await keeper.write(record);
      } else {
        // A stream that names nothing (plain LINBIT): what the target holds is no longer known.
        await keeper.remove();
      }
      await journal.closeAndDelete();
      await keeper.syncDirs();
      return stored;
    },
    rollback: async () => {
      await journal.close();
      await rollbackJournal(journal.path, target, keeper);
    },
    close: async () => {
      await journal.close();
    },
  };
}

/**
 * Opens (create: creates, O_EXCL) the staging file `name` in the directory
 * `dirFd`, with no symlink followed (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS); it must be a regular file with one link. A symlink
 * or anything else put at its name is refused, never written through.
 */
function openStagingFile(dirFd: number, name: string, path: string, create: boolean): number {
  let fd: number;
  try {
    fd = nativeDevice().openBeneath(dirFd, name, fsConstants.O_RDWR | fsConstants.O_NOCTTY | (create ? fsConstants.O_CREAT | fsConstants.O_EXCL : 0), 0o600);
  } catch (e) {
    const errno = (e as { code?: string }).code;
    throw new ThinshipError(
      'PERMISSION_DENIED',
      `staging file ${path}: ${errno === 'EEXIST' ? 'something appeared at its name between its removal and its creation' : errno === 'ELOOP' ? 'it is a symbolic link' : `it cannot be ${create ? 'created' : 'opened'}`} (${errno ?? (e as Error).message}); nothing was written`,
      { details: { path, errno }, cause: e },
    );
  }
  const st = fstatSync(fd, { bigint: true });
  if (!st.isFile() || st.nlink !== 1n) {
    closeSync(fd);
    throw new ThinshipError('PERMISSION_DENIED', `staging file ${path} is not a regular file with one link (${st.nlink} links); it is not written`, {
      details: { path },
    });
  }
  return fd;
}

/** Writes a journal's old bytes back (newest first), cuts the target to its original size, deletes the journal. */
export async function rollbackJournal(
  path: string,
  target: VolumeHandle,
  keeper: RecordKeeper = fileRecordKeeper(target, target.path),
): Promise<{ ranges: number; committed: boolean }> {
  const j = await readJournal(path);
  if (j.committed) {
    // The data was final: finish the commit instead.
    await keeper.write(j.committed);
    await unlink(path);
    return { ranges: 0, committed: true };
  }
  // Not through the journal's own wrapper: write with the plain methods of the prototype.
  const proto = Object.getPrototypeOf(target) as VolumeHandle;
  const fh = await openFile(path, 'r');
  try {
    for (let i = j.ranges.length - 1; i >= 0; i--) {
      const r = j.ranges[i]!;
      if (r.zeros) await proto.makeZero.call(target, r.offsetBytes, r.lengthBytes);
      else await proto.writeAt.call(target, await readOldBytes(fh, r), r.offsetBytes);
    }
  } finally {
    await fh.close();
  }
  if (target.kind === 'file') {
    const st = await target.stat();
    if (Number(st.size) > j.header.originalSizeBytes) {
      await ftruncateFd(fdOf(target), j.header.originalSizeBytes);
    }
  }
  await target.flush();
  // The target is its old self again: the journal goes first (it frees the room a full disk may lack for
  // the record). A crash before the record is taken again leaves a stale commit stat: seen as diverged, never missed.
  await unlink(path);
  await syncDir(dirname(path));
  if (j.header.restoreRecord) await keeper.rerecord();
  return { ranges: j.ranges.length, committed: false };
}

export interface RecoveryAction {
  file: string;
  action: 'rolled-back' | 'commit-finished' | 'staging-removed' | 'journal-dropped' | 'journal-kept';
  /** journal-kept: why it could not be rolled back now (a device journal whose device is absent or busy). */
  why?: string;
}

/**
 * What an earlier apply left beside a target (a crash, a kill, an abort
 * without cleanup), except the staging or journal of `keepOwner`: journals
 * are rolled back (or their commit finished, if it had begun), staging files
 * removed. The target then holds exactly its last received snapshot.
 * onlyOwner: only that owner's (an aborted or expired transfer); keepTags:
 * not those owners' (resumable transfers, by ownerTag).
 */
export async function recoverFileTarget(
  targetPath: string,
  keepOwner?: string,
  o: { onlyOwner?: string; keepTags?: ReadonlySet<string> } = {},
): Promise<RecoveryAction[]> {
  const dir = dirname(targetPath);
  const prefix = `.${basename(targetPath)}.thinship-`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const keep = keepOwner === undefined ? undefined : ownerTag(keepOwner);
  const only = o.onlyOwner === undefined ? undefined : ownerTag(o.onlyOwner);
  const done: RecoveryAction[] = [];
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const rest = n.slice(prefix.length);
    const m = /^(staging|undo)-([0-9a-f]{16})$/.exec(rest);
    if (!m || m[2] === keep || (only !== undefined && m[2] !== only) || o.keepTags?.has(m[2]!)) continue;
    const file = join(dir, n);
    if (m[1] === 'staging') {
      await unlink(file).catch(() => undefined);
      done.push({ file, action: 'staging-removed' });
      continue;
    }
    let target: VolumeHandle | undefined;
    try {
      target = await openVolume(targetPath, { mode: 'write' });
    } catch {
      target = undefined;
    }
    try {
      const j = await readJournal(file);
      const st = target ? await target.stat() : undefined;
      if (!target || !st || String(st.ino) !== j.header.ino || String(st.dev) !== j.header.dev) {
        // The target was replaced or removed: the journal's bytes belong to a file that is gone.
        await unlink(file);
        done.push({ file, action: 'journal-dropped' });
        continue;
      }
      const r = await rollbackJournal(file, target);
      done.push({ file, action: r.committed ? 'commit-finished' : 'rolled-back' });
    } finally {
      await target?.close().catch(() => undefined);
    }
  }
  return done;
}

/** Staging files and journals anywhere under `dir`, by the target they belong to. */
export async function findStagedTargets(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir, { recursive: true });
  } catch {
    return [];
  }
  const targets = new Set<string>();
  for (const n of names) {
    const m = /^\.(.+)\.thinship-(staging|undo)-[0-9a-f]{16}$/.exec(basename(n));
    if (m) targets.add(join(dir, dirname(n), m[1]!));
  }
  return [...targets];
}
