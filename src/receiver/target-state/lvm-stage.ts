/**
 * One apply onto an LVM thin LV target, for both transports (pipe-mode
 * `recv vg/lv`: cli/commands/recv-lvm.ts; `thinship serve`: transfer-hooks.ts):
 *
 *   checkLvmBegin   every refusal, before the staging LV exists: not thin, open,
 *                   diverged (unless forced), wrong base, too small (unless grown),
 *                   missing without a pool to create it in
 *   openLvmStage    the staging LV (lvm-commit.ts createStaging), grown when asked, opened
 *   resumeLvmStage  a resumable gRPC transfer's own staging LV, opened again
 *   LvmStage.commit the validated End: flush, close, journaled renames, received snapshot
 *
 * A staging LV made for a gRPC transfer carries thinship.owner:<owner> (lvm-tags.ts),
 * so that a receiver start or the next apply keeps it while its transfer is
 * resumable, and AbortTransfer or expiry removes exactly that one.
 */
import { existsSync } from 'node:fs';
import { ThinshipError } from '../../errors.js';
import { runTool } from '../../exec/run.js';
import { classifyLvm } from '../../exec/known-errors.js';
import { openVolume, type VolumeHandle } from '../../device/volume.js';
import { lvDevicePath } from '../../thin/names.js';
import { checkTargetRules } from './rules.js';
import { parseTags } from './lvm-tags.js';
import { listLvs, lvmDivergence, receivedSnapshotName, type LvmTargetState, type LvRow } from './lvm-target.js';
import { commitLvmStage, createStaging, extendStaging, removeStaging, type StagingSource } from './lvm-commit.js';
import type { TargetRecord } from './record.js';

/** What of a stream's begin the LVM rules read. */
export interface LvmStreamBegin {
  /** The target as the sender or operator named it (messages). */
  target: string;
  /** A full stream that says the volume size: the only kind that may create or replace the target. */
  full: boolean;
  volumeSizeBytes?: number;
  sourceId?: string;
  baseId?: string;
  force: boolean;
  grow: boolean;
}

/**
 * Every refusal before anything is written; returns what the staging LV is
 * made from. `pool`: where a missing target is created (pipe: --pool; serve:
 * the lvm rule's pool); `noPool`: what to say when there is none.
 */
export async function checkLvmBegin(
  s: LvmTargetState,
  b: LvmStreamBegin,
  o: { pool: string | undefined; noPool: string; warn: (m: string) => void },
): Promise<StagingSource> {
  const name = b.target;
  if (!s.target) {
    if (!b.full)
      throw new ThinshipError(
        'NOT_FOUND',
        `target ${name} does not exist: ${b.baseId ? `an incremental stream applies only to a target holding its base ${b.baseId}` : 'a stream that does not say the volume size (a plain LINBIT stream) cannot create it'}`,
        { details: { target: name } },
      );
    if (!o.pool) throw new ThinshipError('NOT_FOUND', `target ${name} does not exist: ${o.noPool}`, { details: { target: name } });
    return { pool: o.pool, sizeBytes: b.volumeSizeBytes! };
  }
  const t = s.target;
  if (t.thinId < 0 || !t.pool)
    throw new ThinshipError(
      'NOT_THIN',
      `target ${name} is not a thin volume (attr ${t.attr}): thinship receives into thin LVs so that a staging snapshot and discards cost nothing`,
    );
  if (t.open)
    throw new ThinshipError(
      'TARGET_BUSY',
      `target ${name} is open (mounted or held by a process: lvs -o lv_device_open): nothing was written; unmount or close it first`,
      { details: { target: name } },
    );
  const why = await lvmDivergence(s);
  let rollbackTo: LvRow | undefined;
  if (why.length > 0) {
    const holds = `${s.record!.sourceId}${s.record!.snapshotName ? ` (${s.record!.snapshotName})` : ''}`;
    if (!b.force)
      throw new ThinshipError(
        'DIVERGED',
        `target ${name} was written since it received ${holds}: ${why.join('; ')}; nothing was written (--force rolls it back to its last received snapshot, as zfs recv -F does)`,
        { details: { target: name, holds: s.record!.sourceId, divergence: why } },
      );
    rollbackTo = b.full ? undefined : s.lastSnapshot;
    o.warn(
      `--force: target ${name} had diverged from ${holds} (${why.join('; ')}); ${b.full ? 'the full stream replaces it' : rollbackTo ? `rolled back to ${s.vg}/${rollbackTo.lv} before the increment` : 'its last received snapshot is gone: the increment is applied over it'}`,
    );
  }
  const rules = checkTargetRules(
    { target: name, incremental: !b.full, sourceId: b.sourceId, baseId: b.baseId },
    s.record ? { record: s.record } : undefined,
    undefined,
    { force: b.force },
  );
  for (const w of rules.warnings) o.warn(w);
  const baseSize = rollbackTo?.sizeBytes ?? t.sizeBytes;
  if (!b.full && b.volumeSizeBytes !== undefined && baseSize < b.volumeSizeBytes && !b.grow) {
    throw new ThinshipError(
      'TARGET_TOO_SMALL',
      `the stream is for a volume of ${b.volumeSizeBytes} bytes but target ${name} has only ${baseSize} bytes; nothing was written (--grow extends it)`,
    );
  }
  return b.full ? { pool: t.pool, sizeBytes: b.volumeSizeBytes! } : { snapshotOf: rollbackTo?.lv ?? s.lv };
}

export interface LvmStage {
  /** The staging LV as made (its uuid is what the commit journal records). */
  staging: LvRow;
  /** Where the stream's records are written: the staging LV's device. */
  handle: VolumeHandle;
  /**
   * The validated End: flush and close, then the staging LV becomes the target
   * (lvm-commit.ts), with a received snapshot when the record names a source.
   * `rows`: the VG's LVs now, when the caller knows them (one lvs less).
   */
  commit(record: TargetRecord | undefined, rows?: LvRow[]): Promise<{ snapshotName: string }>;
  /** Closes without deciding (a resumable transfer keeps its staging LV). */
  close(): Promise<void>;
  /** Closes and removes the staging LV: the target keeps its previous snapshot. */
  discard(): Promise<void>;
}

interface StageOptions {
  stateDir: string;
  vg: string;
  lv: string;
  keepSnapshots: number;
}

function stageOf(o: StageOptions, staging: LvRow, handle: VolumeHandle): LvmStage {
  return {
    staging,
    handle,
    async commit(record, rowsNow) {
      await handle.flush();
      await handle.close();
      const rows = rowsNow ?? (await listLvs(o.vg));
      const staged = rows.find((r) => r.uuid === staging.uuid) ?? staging;
      const snapshotName = record ? receivedSnapshotName(o.lv, record, rows) : '';
      const targetUuid = rows.find((r) => r.lv === o.lv)?.uuid ?? '';
      // The stream was applied and validated: from the journal on, a crash finishes this commit.
      await commitLvmStage({ ...o, staging: staged, targetUuid, record, snapshotName, rows });
      return { snapshotName };
    },
    close: () => handle.close(),
    async discard() {
      await handle.close().catch(() => undefined);
      await removeStaging(o.vg, o.lv);
    },
  };
}

/** Creates the staging LV from `from` (grown to the stream's size if smaller) and opens it for writing. */
export async function openLvmStage(o: StageOptions & { from: StagingSource; volumeSizeBytes: number | undefined; owner?: string }): Promise<LvmStage> {
  let staging = await createStaging({ vg: o.vg, lv: o.lv, from: o.from, owner: o.owner });
  try {
    if ('snapshotOf' in o.from && o.volumeSizeBytes !== undefined && staging.sizeBytes < o.volumeSizeBytes) {
      await extendStaging(o.vg, o.lv, o.volumeSizeBytes);
      staging = { ...staging, sizeBytes: o.volumeSizeBytes };
    }
    return stageOf(o, staging, await openVolume(lvDevicePath(o.vg, staging.lv), { mode: 'write' }));
  } catch (e) {
    await removeStaging(o.vg, o.lv).catch(() => undefined);
    throw e;
  }
}

/**
 * A resumed gRPC transfer's staging LV (made by openLvmStage with `owner`),
 * activated if a reboot left it inactive, and opened again. Refused
 * (RESUME_MISMATCH) when it is gone or another's: what was written so far is lost.
 */
export async function resumeLvmStage(o: StageOptions & { staging: LvRow | undefined; owner: string; transferId: string }): Promise<LvmStage> {
  const s = o.staging;
  if (!s || parseTags(s.tags).get('owner') !== o.owner)
    throw new ThinshipError(
      'RESUME_MISMATCH',
      `transfer ${o.transferId} cannot resume: its staging LV ${o.vg}/${o.lv}.thinship-staging ${s ? 'belongs to another apply' : 'is gone'}, so what it wrote so far is lost; abort it (AbortTransfer) and send again`,
    );
  const path = lvDevicePath(o.vg, s.lv);
  if (!existsSync(path)) await runTool('lvchange', ['-ay', '-K', `${o.vg}/${s.lv}`], { classify: classifyLvm });
  return stageOf(o, s, await openVolume(path, { mode: 'write' }));
}
