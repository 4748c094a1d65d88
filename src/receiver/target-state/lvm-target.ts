/**
 * An LVM thin LV target (`vg/lv`) as the receiver sees it: its record (LV
 * tags, lvm-tags.ts), its received snapshots, a staging LV of an apply in
 * progress, and whether it has diverged from its last received snapshot.
 *
 * Names next to a target `vg/LV` (LVM's name rules: A-Z a-z 0-9 + _ . -):
 *   LV.thinship-staging   the apply in progress (a thin snapshot of LV, or a new thin LV for a full stream)
 *   LV.thinship-old       the previous LV during a commit's renames (lvm-commit.ts)
 *   LV.SNAP               a received snapshot, read-only: SNAP is the LV name of the source
 *                         snapshot the stream named (begin-info sourceName `vg0/snap2` → `LV.snap2`),
 *                         characters outside LVM's set replaced by `_`; a stream that names none
 *                         gives `LV.src-` + 12 hex digits of the sha256 of its source id, and so does
 *                         a name that would make the LV name too long for LVM (127 characters)
 *
 * Divergence is read from the pool's own metadata, never from the data: the
 * target is compared with its last received snapshot (tag thinship.snap) by
 * the same delta a send plans from (thin_delta or the native reader, under
 * the pool's metadata snapshot). A snapshot taken of the target shares every
 * mapping with it, so any block written or discarded since shows as a delta.
 */
import { createHash } from 'node:crypto';
import { ThinshipError } from '../../errors.js';
import { runTool } from '../../exec/run.js';
import { classifyLvm } from '../../exec/known-errors.js';
import { withMetadataSnapshot } from '../../thin/metadata-snap.js';
import { planFromMetadata } from '../../thin/planner.js';
import { parseTags, recordFromTags } from './lvm-tags.js';
import { targetStateSettings, type TargetRecord } from './record.js';

/** How many received snapshots a target keeps by default (recv --keep-snapshots). */
export const DEFAULT_KEEP_SNAPSHOTS = 2;
/** The most received snapshots a target may keep (recv --keep-snapshots, the receiver config's keepSnapshots). */
export const MAX_KEEP_SNAPSHOTS = 1000;
/** LVM's longest LV name. */
const MAX_LV_NAME_CHARS = 127;

const LVS_FIELDS = 'vg_name,lv_name,lv_uuid,lv_size,pool_lv,origin,thin_id,lv_attr,lv_tags,lv_device_open';

export interface LvRow {
  vg: string;
  lv: string;
  uuid: string;
  sizeBytes: number;
  pool: string;
  origin: string;
  /** -1 when not a thin LV. */
  thinId: number;
  attr: string;
  tags: string[];
  /** lvs lv_device_open: the LV's device is open (mounted, or held by a process). */
  open: boolean;
}

export function stagingLvName(lv: string): string {
  return checkedName(`${lv}.thinship-staging`);
}

export function oldLvName(lv: string): string {
  return checkedName(`${lv}.thinship-old`);
}

/**
 * The received snapshot's name (see the header). `rows`: the VG's LVs; a name
 * held by an LV that is not a received snapshot of this target gets `.` and
 * 8 hex digits of the source id's sha256 appended.
 */
export function receivedSnapshotName(lv: string, r: Pick<TargetRecord, 'sourceId' | 'snapshotName'>, rows: LvRow[]): string {
  const hash = createHash('sha256').update(r.sourceId).digest('hex');
  const snap = r.snapshotName
    ?.split('/')
    .pop()
    ?.replace(/[^A-Za-z0-9+_.-]/g, '_');
  // A source name too long for LVM beside this target is named like one that names nothing.
  const named = snap && `${lv}.${snap}`.length + 9 <= MAX_LV_NAME_CHARS ? snap : undefined;
  const name = checkedName(`${lv}.${named ?? `src-${hash.slice(0, 12)}`}`);
  const holder = rows.find((x) => x.lv === name);
  if (!holder || parseTags(holder.tags).get('snapof') === lv) return name;
  return checkedName(`${name}.${hash.slice(0, 8)}`);
}

function checkedName(n: string): string {
  if (n.length > MAX_LV_NAME_CHARS)
    throw new ThinshipError(
      'USAGE',
      `the LV name ${n} that thinship needs beside the target is longer than LVM's ${MAX_LV_NAME_CHARS} characters: use a shorter target or snapshot name`,
    );
  return n;
}

/** Every LV of a VG, with tags and open state. */
export async function listLvs(vg: string): Promise<LvRow[]> {
  const r = await runTool('lvs', ['--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', LVS_FIELDS, vg], { classify: classifyLvm });
  let doc: { report?: { lv?: Record<string, string>[] }[] };
  try {
    doc = JSON.parse(r.stdout) as typeof doc;
  } catch (e) {
    throw new ThinshipError('TOOL_FAILED', `lvs printed something that is not JSON: ${(e as Error).message}`);
  }
  return (doc.report ?? [])
    .flatMap((x) => x.lv ?? [])
    .map((x) => ({
      vg: x.vg_name ?? vg,
      lv: x.lv_name ?? '',
      uuid: x.lv_uuid ?? '',
      sizeBytes: Number(x.lv_size),
      pool: x.pool_lv ?? '',
      origin: x.origin ?? '',
      thinId: /^\d+$/.test(x.thin_id ?? '') ? Number(x.thin_id) : -1,
      attr: x.lv_attr ?? '',
      tags: (x.lv_tags ?? '').split(',').filter(Boolean),
      open: x.lv_device_open === 'open',
    }));
}

export interface ReceivedSnapshot {
  row: LvRow;
  record: TargetRecord | undefined;
}

export interface LvmTargetState {
  vg: string;
  lv: string;
  /** The target LV; undefined when it does not exist. */
  target: LvRow | undefined;
  record: TargetRecord | undefined;
  /** The snapshot named by the target's thinship.snap tag (what divergence is measured against). */
  lastSnapshotName: string | undefined;
  lastSnapshot: LvRow | undefined;
  /** Received snapshots of this target (tag thinship.snapof), newest first. */
  snapshots: ReceivedSnapshot[];
  staging: LvRow | undefined;
  old: LvRow | undefined;
}

export function targetStateOf(vg: string, lv: string, rows: LvRow[]): LvmTargetState {
  const byName = (n: string) => rows.find((r) => r.lv === n);
  const target = byName(lv);
  const record = target ? recordFromTags(target.tags, `LV ${vg}/${lv}`) : undefined;
  const lastSnapshotName = target ? parseTags(target.tags).get('snap') : undefined;
  const snapshots = rows
    .filter((r) => parseTags(r.tags).get('snapof') === lv)
    .map((row) => ({ row, record: recordFromTags(row.tags, `LV ${vg}/${row.lv}`) }))
    .sort((a, b) => (b.record?.receivedUnixMs ?? 0) - (a.record?.receivedUnixMs ?? 0));
  const staging = byName(stagingLvName(lv));
  const old = byName(oldLvName(lv));
  return {
    vg,
    lv,
    target,
    record,
    lastSnapshotName,
    lastSnapshot: lastSnapshotName === undefined ? undefined : byName(lastSnapshotName),
    snapshots,
    staging,
    old,
  };
}

export async function readLvmTarget(vg: string, lv: string): Promise<LvmTargetState> {
  return targetStateOf(vg, lv, await listLvs(vg));
}

/**
 * How the target differs from its last received snapshot, read from the pool
 * metadata; [] when it has not changed (or has no record to compare with).
 */
export async function lvmDivergence(s: LvmTargetState): Promise<string[]> {
  if (!s.target || !s.record) return [];
  if (!s.lastSnapshotName) return [`its record names no received snapshot (tag thinship.snap) to compare it with`];
  const snap = s.lastSnapshot;
  if (!snap) return [`its last received snapshot ${s.vg}/${s.lastSnapshotName} is gone, so nothing shows it is unchanged`];
  if (snap.pool !== s.target.pool || snap.thinId < 0 || s.target.thinId < 0)
    return [`its last received snapshot ${s.vg}/${snap.lv} is not a thin LV in its pool`];
  const why: string[] = [];
  if (snap.sizeBytes !== s.target.sizeBytes) why.push(`size ${s.target.sizeBytes} bytes, ${snap.lv} has ${snap.sizeBytes}`);
  const totals = await withMetadataSnapshot(s.vg, s.target.pool, async (scope) => {
    const r = await planFromMetadata(
      {
        metadataPath: scope.tmetaPath,
        useMetadataSnap: true,
        baseDevId: snap.thinId,
        snapDevId: s.target!.thinId,
        volumeSizeBytes: s.target!.sizeBytes,
        signal: scope.signal,
      },
      { metadataReader: targetStateSettings.metadataReader },
    );
    try {
      return r.plan.totals;
    } finally {
      await r.plan.close();
      await r.mappings?.close();
    }
  });
  if (totals.dataOps + totals.unmapOps > 0) {
    why.push(
      `${totals.dataBytes} bytes written and ${totals.unmapBytes} bytes discarded since ${s.vg}/${snap.lv} (pool metadata: thin ids ${snap.thinId} → ${s.target.thinId})`,
    );
  }
  return why;
}
