/**
 * What a target holds, for `thinship target show` and the GetTarget RPC: its
 * record (on the file, or in the state directory for a block device), whether
 * it diverged since, and any staging file or undo journal of an apply.
 */
import { readdir } from 'node:fs/promises';
import { fstatSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { nativeDevice } from '../../device/native.js';
import { readFileRecord, type CommitStat, type TargetRecord } from './record.js';
import { divergenceOf } from './rules.js';
import { inspectDevice } from './device-stage.js';
import type { DeviceCommitStat } from './device.js';

export interface TargetReport {
  target: string;
  kind: 'file' | 'block-device';
  /** What the target holds; null when it has no record (never received, or received a plain LINBIT stream). */
  record: {
    record: TargetRecord;
    /** The stat recorded at commit (divergence); not carried by GetTarget. */
    commit?: CommitStat | DeviceCommitStat;
    /** Where: the file's extended attributes, a sidecar beside it, or the receiver's state directory (block devices). */
    store: 'xattr' | 'sidecar' | 'state-dir';
    /** state-dir: the record file. */
    file?: string;
  } | null;
  /** Block devices: the identity the record is keyed by (target-state/device.ts). */
  identity?: string;
  diverged: boolean;
  divergence: string[];
  /** Block devices: what could not be checked (writes before a reboot or re-attach). */
  divergenceUnchecked?: string;
  /** Staging files and undo journals of the target: an apply in progress, resumable, or interrupted (rolled back at the next apply or receiver start). */
  staged: { file: string; kind: 'staging' | 'undo-journal' }[];
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
