/**
 * What a target holds, for `thinship target show` and the GetTarget RPC: its
 * record (on the file, or in the state directory for a block device), whether
 * it diverged since, and any staging file or undo journal of an apply.
 */
import { readdir } from 'node:fs/promises';
import { existsSync, fstatSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { nativeDevice } from '../../device/native.js';
import { readFileRecord, type CommitStat, type TargetRecord } from './record.js';
import { divergenceOf } from './rules.js';
import { inspectDevice } from './device-stage.js';
import type { DeviceCommitStat } from './device.js';
import { lvmDivergence, readLvmTarget } from './lvm-target.js';
import { lvmJournalPath } from './lvm-commit.js';

export interface TargetReport {
  target: string;
  kind: 'file' | 'block-device' | 'lvm';
  /** What the target holds; null when it has no record (never received, or received a plain LINBIT stream). */
  record: {
    record: TargetRecord;
    /** The stat recorded at commit (divergence); not carried by GetTarget. */
    commit?: CommitStat | DeviceCommitStat;
    /** Where: the file's extended attributes, a sidecar beside it, the receiver's state directory (block devices), or the LV's tags. */
    store: 'xattr' | 'sidecar' | 'state-dir' | 'lv-tags';
    /** state-dir: the record file. */
    file?: string;
  } | null;
  /** Block devices: the identity the record is keyed by (target-state/device.ts). */
  identity?: string;
  diverged: boolean;
  divergence: string[];
  /** Block devices: what could not be checked (writes before a reboot or re-attach). */
  divergenceUnchecked?: string;
  /**
   * Staging files, undo journals, staging LVs and LVM commit journals of the target: an apply in progress,
   * resumable, or interrupted (rolled back, or for a commit journal finished, at the next apply or receiver start).
   */
  staged: { file: string; kind: 'staging' | 'undo-journal' | 'staging-lv' | 'commit-journal' }[];
  /** LVM: its last received snapshot (what divergence is measured against), vg/lv. */
  lastSnapshot?: string;
  /** LVM: the received snapshots kept, newest first, vg/lv. */
  keptSnapshots?: string[];
}

/** The report of the regular file open as `fd` (path `path`). */
async function fileTargetReport(fd: number, path: string, name = path): Promise<TargetReport> {
  const st = fstatSync(fd, { bigint: true });
  const stored = (await readFileRecord(fd, path)) ?? null;
  const divergence = stored ? divergenceOf(stored, st) : [];
  const prefix = `.${basename(path)}.thinship-`;
  const staged: TargetReport['staged'] = [];
  for (const n of await readdir(dirname(path)).catch(() => [] as string[])) {
    if (!n.startsWith(prefix)) continue;
    const m = /^(staging|undo)-[0-9a-f]{16}$/.exec(n.slice(prefix.length));
    if (m) staged.push({ file: join(dirname(path), n), kind: m[1] === 'staging' ? 'staging' : 'undo-journal' });
  }
  return { target: name, kind: 'file', record: stored, diverged: divergence.length > 0, divergence, staged };
}

/** The report of the block device open as `fd`, whose record is in `stateDir`. */
async function deviceTargetReport(fd: number, stateDir: string, name: string): Promise<TargetReport> {
  const st = fstatSync(fd, { bigint: true });
  const s = await inspectDevice(stateDir, st.rdev, nativeDevice().blockSizeBytes(fd), name);
  return {
    target: name,
    kind: 'block-device',
    record: s.record ? { record: s.record.record, commit: s.record.commit, store: 'state-dir', file: s.file } : null,
    identity: s.identity.description,
    diverged: s.divergence.why.length > 0,
    divergence: s.divergence.why,
    ...(s.record && s.divergence.unchecked ? { divergenceUnchecked: s.divergence.unchecked } : {}),
    staged: s.staged.map((file) => ({ file, kind: 'undo-journal' as const })),
  };
}

/** The report of whatever `fd` is: a regular file or a block device; anything else is a USAGE error. */
export async function targetReportOf(fd: number, path: string, stateDir: string, name = path): Promise<TargetReport> {
  const st = fstatSync(fd, { bigint: true });
  if (st.isFile()) return fileTargetReport(fd, path, name);
  if (st.isBlockDevice()) return deviceTargetReport(fd, stateDir, name);
  throw new ThinshipError(
    'USAGE',
    `target ${name} is neither a regular file nor a block device: thinship records what file and block-device targets hold (LVs: see the README)`,
  );
}

/** What an LVM thin LV target holds (its tags, lvm-tags.ts), for `target show vg/lv` on the receiving host. */
export interface LvmTargetReport {
  target: string;
  /** What the target holds; null when its tags hold no record. */
  record: TargetRecord | null;
  /** The LV tags the record was read from (ours: thinship.*). */
  tags: string[];
  diverged: boolean;
  divergence: string[];
  /** Its last received snapshot (what divergence is measured against). */
  lastSnapshot: string | null;
  /** Received snapshots kept, newest first. */
  snapshots: { lv: string; sourceId: string | null; snapshotName: string | null; receivedUnixMs: number | null }[];
  /** A staging LV (an apply in progress or interrupted), and a commit journal (an interrupted commit, finished by the next recv). */
  staged: { stagingLv: string | null; commitJournal: string | null };
}

export async function lvmTargetReport(vg: string, lv: string, stateDir: string): Promise<LvmTargetReport> {
  const s = await readLvmTarget(vg, lv);
  if (!s.target)
    throw new ThinshipError(
      'NOT_FOUND',
      `target ${vg}/${lv} does not exist${s.staging ? ` (but ${vg}/${s.staging.lv} does: an apply in progress, or an interrupted commit the next apply finishes)` : ''}`,
      { details: { target: `${vg}/${lv}` } },
    );
  const divergence = await lvmDivergence(s);
  const journal = lvmJournalPath(stateDir, vg, lv);
  return {
    target: `${vg}/${lv}`,
    record: s.record ?? null,
    tags: s.target.tags.filter((t) => t.startsWith('thinship.')),
    diverged: divergence.length > 0,
    divergence,
    lastSnapshot: s.lastSnapshotName ? `${vg}/${s.lastSnapshotName}` : null,
    snapshots: s.snapshots.map((x) => ({
      lv: `${vg}/${x.row.lv}`,
      sourceId: x.record?.sourceId ?? null,
      snapshotName: x.record?.snapshotName ?? null,
      receivedUnixMs: x.record?.receivedUnixMs ?? null,
    })),
    staged: { stagingLv: s.staging ? `${vg}/${s.staging.lv}` : null, commitJournal: existsSync(journal) ? journal : null },
  };
}

/** GetTarget of an LVM target (`name` as the sender named it): lvmTargetReport in the shape every target kind shares. */
export async function lvmTargetReportOf(vg: string, lv: string, stateDir: string, name: string): Promise<TargetReport> {
  const l = await lvmTargetReport(vg, lv, stateDir);
  const staged: TargetReport['staged'] = [];
  if (l.staged.stagingLv) staged.push({ file: l.staged.stagingLv, kind: 'staging-lv' });
  if (l.staged.commitJournal) staged.push({ file: l.staged.commitJournal, kind: 'commit-journal' });
  return {
    target: name,
    kind: 'lvm',
    record: l.record ? { record: l.record, store: 'lv-tags' } : null,
    diverged: l.diverged,
    divergence: l.divergence,
    staged,
    ...(l.lastSnapshot ? { lastSnapshot: l.lastSnapshot } : {}),
    keptSnapshots: l.snapshots.map((x) => x.lv),
  };
}
