/**
 * The gRPC receiver's (transfers.ts) calls into target-state/ for file
 * targets, kept here so that the registry only calls named hooks:
 *
 *   openTransferStage    after the target is opened: roll back leftovers, check the
 *                        record (base, divergence, size), open the staging file or journal
 *   commitTransferStage  at the validated End: the staged data becomes the target, recorded
 *   openDeviceTransferStage  the same for a raw block device (device-stage.ts: record and journal in the state dir)
 *   openLvmTransferStage     the same for an LVM thin LV (lvm-stage.ts: record in LV tags, a staging LV)
 *   discardTransferStage AbortTransfer and expiry: roll the transfer's staging/journal back
 *   recoverAtStart       receiver start: roll back what no resumable transfer owns, finish LVM commits
 */
import type { Logger } from 'pino';
import { ThinshipError } from '../../errors.js';
import type { VolumeHandle } from '../../device/volume.js';
import type { AccessPolicy, AllowedTarget } from '../access.js';
import type { TransferBegin } from '../record-checks.js';
import { openTargetDirectory } from '../target.js';
import { readFileRecord, receivedRecord } from './record.js';
import { checkTargetRules, divergenceOf } from './rules.js';
import { recoverDeviceJournals, openDeviceStage } from './device-stage.js';
import { findStagedTargets, openFileStage, ownerTag, recoverFileTarget, type FileStage, type RecoveryAction } from './staging.js';
import { describeLvmRecovery, recoverLvmAtStart, recoverLvmTarget, removeOwnedStaging } from './lvm-commit.js';
import { targetStateOf, type LvRow } from './lvm-target.js';
import { checkLvmBegin, openLvmStage, resumeLvmStage, type LvmStage } from './lvm-stage.js';
import { lvmOfKey } from '../access.js';

/** What of the registry's begin (record-checks.ts TransferBegin) matters here. */
export type StageBegin = Pick<TransferBegin, 'target' | 'incremental' | 'volumeSizeBytes' | 'sourceId' | 'baseId' | 'force' | 'grow'>;

/** What the registry writes a transfer through: a file's staging file or undo journal, a device's journal, an LV's staging LV. */
export interface TransferStage {
  handle: VolumeHandle;
  commit(record: ReturnType<typeof receivedRecord>): Promise<unknown>;
  close(): Promise<void>;
}

export function transferOwner(identity: string, transferId: string): string {
  return `grpc:${identity}/${transferId}`;
}

function logRecovery(log: Logger, acts: RecoveryAction[]): void {
  for (const a of acts) {
    if (a.action === 'journal-kept')
      log.warn(
        { file: a.file, action: a.action, why: a.why },
        'undo journal of an interrupted apply kept: its device cannot be rolled back now (it is, when the device is next a target, or at a later start)',
      );
    else
      log.warn(
        { file: a.file, action: a.action },
        a.action === 'commit-finished'
          ? 'interrupted commit finished: the target holds the new snapshot'
          : 'interrupted apply rolled back: the target holds its previous snapshot',
      );
  }
}

/**
 * Before the first byte of a transfer onto a file target. A new transfer
 * (resuming false) is checked against the target's record and may be refused
 * (BASE_MISMATCH, DIVERGED, TARGET_TOO_SMALL) with nothing written; a resumed
 * one continues into its own staging or journal.
 */
export async function openTransferStage(
  t: Extract<AllowedTarget, { kind: 'path' }>,
  handle: VolumeHandle,
  created: boolean,
  b: StageBegin,
  owner: string,
  resuming: boolean,
  log: Logger,
): Promise<FileStage> {
  logRecovery(log, await recoverFileTarget(t.realPath, resuming ? owner : undefined));
  const st = await handle.stat();
  const rec = created ? undefined : await readFileRecord(handle.fd, t.realPath);
  if (!resuming) {
    if (!created && handle.sizeBytes > 0 && handle.sizeBytes < b.volumeSizeBytes && !b.grow) {
      // An empty file holds nothing to protect: it is a new target.
      throw new ThinshipError(
        'TARGET_TOO_SMALL',
        `the stream is for a volume of ${b.volumeSizeBytes} bytes but target ${b.target} has only ${handle.sizeBytes} bytes; nothing was written (send --grow extends it)`,
      );
    }
    const rules = checkTargetRules({ target: b.target, incremental: b.incremental, sourceId: b.sourceId, baseId: b.baseId ?? '' }, rec, st, {
      force: b.force === true,
    });
    for (const w of rules.warnings) log.warn({ target: b.target }, w);
  }
  return openFileStage({
    targetPath: t.realPath,
    target: handle,
    mode: b.incremental ? 'in-place' : 'full',
    volumeSizeBytes: b.volumeSizeBytes,
    owner,
    resume: resuming,
    grow: b.grow === true || created || handle.sizeBytes === 0,
    recordIsClean: rec !== undefined && divergenceOf(rec, st).length === 0,
    openDir: () => openTargetDirectory(t),
  });
}

export async function commitTransferStage(stage: TransferStage, b: StageBegin, transferId: string, digest: Buffer | undefined): Promise<void> {
  const record = receivedRecord(b, { digest, transferId, volumeSizeBytes: b.volumeSizeBytes });
  await stage.commit(record);
}

/**
 * Before the first byte of a transfer onto a raw block device (device-stage.ts):
 * the same rules, against the record in the state directory; always an undo journal.
 */
export async function openDeviceTransferStage(
  t: Extract<AllowedTarget, { kind: 'device' }>,
  handle: VolumeHandle,
  b: StageBegin,
  owner: string,
  resuming: boolean,
  stateDir: string,
  log: Logger,
): Promise<FileStage> {
  const st = await handle.stat();
  return openDeviceStage({
    stateDir,
    targetName: b.target,
    target: handle,
    rdev: st.rdev,
    owner,
    resume: resuming,
    force: b.force === true,
    grow: b.grow === true,
    stream: { target: b.target, incremental: b.incremental, sourceId: b.sourceId, baseId: b.baseId, volumeSizeBytes: b.volumeSizeBytes },
    warn: (w) => log.warn({ target: b.target }, w),
    recovered: (a) => logRecovery(log, [a]),
  });
}

/**
 * Before the first byte of a transfer onto an LVM thin LV (lvm-stage.ts): what
 * an earlier apply left is finished or removed (a resumed transfer keeps its
 * own staging LV and continues into it); a new transfer is checked against
 * the record in the LV's tags (base, divergence in the pool metadata, open,
 * size) exactly as pipe mode is, then a staging LV is made. `identity`: the
 * target LV's (undefined: a full stream creates it).
 */
export async function openLvmTransferStage(
  t: Extract<AllowedTarget, { kind: 'lvm' }>,
  b: StageBegin,
  o: { owner: string; transferId: string; resuming: boolean; stateDir: string; keepSnapshots: number; log: Logger },
): Promise<{ stage: LvmStage; targetUuid: string | undefined }> {
  // The lvm rule's pool, checked against lvs before anything (even a recovery) touches the VG.
  const checkPool = (rows: LvRow[]) => {
    const now = rows.find((r) => r.lv === t.lv);
    if (now && t.pool !== undefined && now.pool !== t.pool) {
      throw new ThinshipError('PERMISSION_DENIED', `target ${b.target} is in thin pool ${t.vg}/${now.pool}, not in the allowed pool ${t.vg}/${t.pool}`);
    }
  };
  const recovered = await recoverLvmTarget(o.stateDir, t.vg, t.lv, { keepOwner: o.resuming ? o.owner : undefined, check: checkPool });
  for (const a of recovered.actions) o.log.warn({ target: b.target, action: a }, describeLvmRecovery(b.target, a));
  const s = targetStateOf(t.vg, t.lv, recovered.rows);
  const common = { stateDir: o.stateDir, vg: t.vg, lv: t.lv, keepSnapshots: o.keepSnapshots };
  if (o.resuming)
    return { stage: await resumeLvmStage({ ...common, staging: s.staging, owner: o.owner, transferId: o.transferId }), targetUuid: s.target?.uuid };
  const from = await checkLvmBegin(
    s,
    {
      target: b.target,
      full: !b.incremental,
      volumeSizeBytes: b.volumeSizeBytes,
      sourceId: b.sourceId,
      baseId: b.baseId,
      force: b.force === true,
      grow: b.grow === true,
    },
    {
      pool: t.pool,
      noPool: `the receiver's lvm rule for it names no "pool" to create it in (a full stream creates a thin LV of ${b.volumeSizeBytes} bytes there)`,
      warn: (w) => o.log.warn({ target: b.target }, w),
    },
  );
  return { stage: await openLvmStage({ ...common, from, volumeSizeBytes: b.volumeSizeBytes, owner: o.owner }), targetUuid: s.target?.uuid };
}

/** AbortTransfer / expiry: the transfer's staging or journal is rolled back; the target holds its previous snapshot. */
export async function discardTransferStage(targetName: string, targetKey: string, owner: string, stateDir: string, log: Logger): Promise<void> {
  // A device journal is found by its owner in the state directory, whatever the device's path is now.
  logRecovery(log, await recoverDeviceJournals(stateDir, { onlyOwner: owner }));
  const lvm = lvmOfKey(targetKey);
  if (lvm) {
    if (await removeOwnedStaging(lvm.vg, lvm.lv, owner))
      log.warn({ target: targetName, action: 'staging-removed' }, describeLvmRecovery(targetName, 'staging-removed'));
    return;
  }
  if (!targetName.startsWith('/')) return;
  logRecovery(log, await recoverFileTarget(targetName, undefined, { onlyOwner: owner }));
}

/**
 * Receiver start: under every allowed directory and in every VG of the lvm
 * rules, what no resumable transfer (keepOwners) owns is rolled back; LVM
 * commits interrupted between their renames are finished from their journals.
 */
export async function recoverAtStart(policy: AccessPolicy, keepOwners: string[], stateDir: string, log: Logger): Promise<void> {
  const keepTags = new Set(keepOwners.map(ownerTag));
  logRecovery(log, await recoverDeviceJournals(stateDir, { keepTags }));
  const vgs = new Set<string>();
  for (const rules of policy.identities.values()) for (const l of rules.lvm) vgs.add(l.vg);
  const lvmFailed = (what: string, e: unknown) =>
    log.error({ what, err: (e as Error).message }, 'start-up recovery of LVM targets failed here; the next apply of its targets tries again');
  for (const a of await recoverLvmAtStart(stateDir, vgs, new Set(keepOwners), lvmFailed))
    log.warn({ target: a.target, action: a.action }, describeLvmRecovery(a.target, a.action));
  const dirs = new Set<string>();
  for (const rules of policy.identities.values()) for (const d of rules.directories) dirs.add(d.real);
  for (const d of dirs) {
    for (const target of await findStagedTargets(d)) {
      logRecovery(log, await recoverFileTarget(target, undefined, { keepTags }));
    }
  }
}
