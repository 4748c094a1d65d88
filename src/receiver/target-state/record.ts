/**
 * What a file target holds, recorded on the target itself so that it cannot
 * be lost separately from it and never expires (unlike the transfer registry):
 *
 *   user.thinship.record  JSON: source volume identity, snapshot name/uuid/thin id, stream digest, time
 *   user.thinship.commit  JSON: size, mtime, ctime and inode at commit (divergence check, divergence.ts)
 *
 * Where the file system has no user xattrs (ENOTSUP; or forced with
 * THINSHIP_TARGET_RECORD=sidecar) the same record lives in a sidecar file
 * beside the target, `.NAME.thinship-record`, keyed by inode: an entry
 * counts only for the inode the target has now, so a sidecar written before
 * a rename-commit describes the new file only once it is the target.
 */
import type { MetadataReaderChoice } from '../../thin/metadata/native-plan.js';
import { closeSync, fstatSync, openSync, constants as fsConstants, type BigIntStats } from 'node:fs';
import { readFile, rename, writeFile, open as openFile, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { nativeDevice } from '../../device/native.js';
import { ThinshipError } from '../../errors.js';
import type { BeginInfo } from '../../stream/messages.js';

const RECORD_XATTR = 'user.thinship.record';
const COMMIT_XATTR = 'user.thinship.commit';

/** What a target holds: one complete received snapshot. */
export interface TargetRecord {
  format: 1;
  /** The source snapshot's identity as the stream names it (thinship: the snapshot LV's uuid). */
  sourceId: string;
  /** The base the stream that wrote it applied to ('' for a full stream). */
  baseId: string;
  /** Source volume / snapshot names when the sender said them (informative). */
  sourceVolume?: string;
  snapshotName?: string;
  thinId?: number;
  volumeSizeBytes: number;
  /** Stream digest (hex) of the stream that wrote it; '' when the stream carried none. */
  digest: string;
  /** 'pipe' or the gRPC transfer id. */
  transferId: string;
  receivedUnixMs: number;
}

/**
 * The record of what a target holds once a stream was applied and validated: from its begin,
 * its end's digest and the transfer that wrote it (the one place a record is made, for every
 * target kind and both transports). Undefined when the stream names no source (a plain LINBIT
 * stream): nothing could be recorded.
 */
export function receivedRecord(b: BeginInfo, o: { digest: Buffer | undefined; transferId?: string; volumeSizeBytes: number }): TargetRecord | undefined {
  if (!b.sourceId) return undefined;
  return {
    format: 1,
    sourceId: b.sourceId,
    baseId: b.incremental ? (b.baseId ?? '') : '',
    ...(b.sourceName !== undefined ? { snapshotName: b.sourceName } : {}),
    volumeSizeBytes: b.volumeSizeBytes ?? o.volumeSizeBytes,
    digest: o.digest && o.digest.length > 0 ? o.digest.toString('hex') : '',
    transferId: o.transferId ?? b.transferId ?? 'pipe',
    receivedUnixMs: Date.now(),
  };
}

/** The target's stat at commit: anything written since moves one of these (see divergence.ts for the limits). */
export interface CommitStat {
  sizeBytes: string;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
  dev: string;
}

export interface StoredRecord {
  record: TargetRecord;
  commit: CommitStat;
  /** Where it was found. */
  store: 'xattr' | 'sidecar';
}

function commitStatOf(st: BigIntStats): CommitStat {
  return { sizeBytes: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs), ino: String(st.ino), dev: String(st.dev) };
}

function sidecarPath(targetPath: string): string {
  return join(dirname(targetPath), `.${basename(targetPath)}.thinship-record`);
}

/**
 * Where records and staging go, as the CLI read it from the environment (the
 * libraries read none): THINSHIP_TARGET_RECORD=sidecar keeps records in sidecar
 * files even where xattrs work, THINSHIP_STAGING=journal never tries a reflink
 * (tests use both to exercise the fallbacks).
 */
export const targetStateSettings: { forceSidecar: boolean; forceJournal: boolean; metadataReader: MetadataReaderChoice } = {
  forceSidecar: false,
  forceJournal: false,
  /** How an LVM target's divergence check reads its pool's metadata (lvm-target.ts). */
  metadataReader: 'auto',
};

function forcedSidecar(): boolean {
  return targetStateSettings.forceSidecar;
}

function noXattrs(e: unknown): boolean {
  const c = (e as { code?: string }).code;
  return c === 'ENOTSUP' || c === 'EOPNOTSUPP';
}

function parseRecord(raw: string, where: string): TargetRecord {
  let r: TargetRecord;
  try {
    r = JSON.parse(raw) as TargetRecord;
  } catch (e) {
    throw new ThinshipError('BAD_METADATA', `the target record in ${where} is not JSON: ${(e as Error).message}`);
  }
  if (r?.format !== 1 || typeof r.sourceId !== 'string' || typeof r.digest !== 'string')
    throw new ThinshipError('BAD_METADATA', `the target record in ${where} is not a thinship format-1 record`);
  return r;
}

interface SidecarFile {
  format: 1;
  entries: Record<string, { record: TargetRecord; commit: CommitStat }>;
}

async function readSidecar(path: string): Promise<SidecarFile | undefined> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const s = JSON.parse(raw) as SidecarFile;
    if (s.format !== 1 || typeof s.entries !== 'object') throw new Error('not a format-1 sidecar');
    return s;
  } catch (e) {
    throw new ThinshipError('BAD_METADATA', `the target record sidecar ${path} is unreadable: ${(e as Error).message}`);
  }
}

/** Writes the sidecar atomically (temporary, fsync, rename, fsync of the directory). */
async function writeSidecar(path: string, s: SidecarFile): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(s), { mode: 0o600 });
  const fh = await openFile(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await syncDir(dirname(path));
}

export async function syncDir(dir: string): Promise<void> {
  const fd = openSync(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
  try {
    const fh = await openFile(`/proc/self/fd/${fd}`, 'r').catch(() => undefined);
    if (fh) {
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * The record of the file open as `fd` (whose path is `targetPath`):
 * undefined when it has none.
 */
export async function readFileRecord(fd: number, targetPath: string): Promise<StoredRecord | undefined> {
  if (!forcedSidecar()) {
    try {
      const n = nativeDevice();
      const rec = n.fgetxattr(fd, RECORD_XATTR);
      const com = n.fgetxattr(fd, COMMIT_XATTR);
      if (rec !== null && com !== null) {
        return {
          record: parseRecord(rec.toString('utf8'), `${targetPath} (${RECORD_XATTR})`),
          commit: JSON.parse(com.toString('utf8')) as CommitStat,
          store: 'xattr',
        };
      }
      if (rec !== null || com !== null)
        throw new ThinshipError(
          'BAD_METADATA',
          `${targetPath} has only one of ${RECORD_XATTR} and ${COMMIT_XATTR}: the record is incomplete (use --force to replace it)`,
        );
      // No xattr record: a sidecar may still describe it (written where xattrs failed before).
    } catch (e) {
      if (!noXattrs(e)) throw e;
    }
  }
  const s = await readSidecar(sidecarPath(targetPath));
  const st = fstatSync(fd, { bigint: true });
  const entry = s?.entries[String(st.ino)];
  return entry ? { ...entry, store: 'sidecar' } : undefined;
}

/**
 * Records `record` on the file open as `fd`: in xattrs (the commit stat last,
 * read after the record is set), else in the sidecar keyed by its inode.
 * `keepInode`: another inode's sidecar entry to keep (the file this one
 * replaces at a rename-commit, until the rename is done).
 */
export async function writeFileRecord(fd: number, targetPath: string, record: TargetRecord, o: { keepInode?: string } = {}): Promise<StoredRecord> {
  if (!forcedSidecar()) {
    try {
      const n = nativeDevice();
      n.fsetxattr(fd, RECORD_XATTR, Buffer.from(JSON.stringify(record)));
      // The stat before this last setxattr: setting it moves ctime once more, by microseconds (divergence.ts allows for it).
      const commit = commitStatOf(fstatSync(fd, { bigint: true }));
      n.fsetxattr(fd, COMMIT_XATTR, Buffer.from(JSON.stringify(commit)));
      return { record, commit, store: 'xattr' };
    } catch (e) {
      if (!noXattrs(e)) throw e;
    }
  }
  const path = sidecarPath(targetPath);
  const old = await readSidecar(path);
  const commit = commitStatOf(fstatSync(fd, { bigint: true }));
  const entries: SidecarFile['entries'] = { [commit.ino]: { record, commit } };
  if (o.keepInode !== undefined && old?.entries[o.keepInode]) entries[o.keepInode] = old.entries[o.keepInode]!;
  await writeSidecar(path, { format: 1, entries });
  return { record, commit, store: 'sidecar' };
}

/** After a rename-commit: the sidecar keeps only the entry of the inode that is the target now. */
export async function pruneSidecar(targetPath: string, ino: string): Promise<void> {
  const path = sidecarPath(targetPath);
  const s = await readSidecar(path).catch(() => undefined);
  if (!s || Object.keys(s.entries).length <= 1 || !s.entries[ino]) return;
  await writeSidecar(path, { format: 1, entries: { [ino]: s.entries[ino] } });
}

/** Removes the record of a file (xattrs and sidecar): a target overwritten outside thinship's rules. */
export async function removeFileRecord(fd: number, targetPath: string): Promise<void> {
  try {
    nativeDevice().fremovexattr(fd, RECORD_XATTR);
    nativeDevice().fremovexattr(fd, COMMIT_XATTR);
  } catch (e) {
    if (!noXattrs(e)) throw e;
  }
  await unlink(sidecarPath(targetPath)).catch(() => undefined);
}
