/** `thinship target show vg/lv [--json]`: what an LVM thin LV target holds, from its LV tags (target-state/lvm-tags.ts). */
import { ThinshipError } from '../../errors.js';
import type { TargetRecord } from '../../receiver/target-state/record.js';
import { lvmDivergence, readLvmTarget } from '../../receiver/target-state/lvm-target.js';
import { lvmJournalPath } from '../../receiver/target-state/lvm-commit.js';
import { existsSync } from 'node:fs';
import { DEFAULT_RECV_STATE_DIR } from './recv-lvm.js';

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

export async function lvmTargetReport(vg: string, lv: string, stateDir = DEFAULT_RECV_STATE_DIR): Promise<LvmTargetReport> {
  const s = await readLvmTarget(vg, lv);
  if (!s.target)
    throw new ThinshipError(
      'NOT_FOUND',
      `target ${vg}/${lv} does not exist${s.staging ? ` (but ${vg}/${s.staging.lv} does: an interrupted commit; the next recv finishes it)` : ''}`,
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

export function lvmReportLines(r: LvmTargetReport): string[] {
  const lines = [`target: ${r.target} (LVM thin LV)`];
  if (!r.record) lines.push('holds: unknown (no thinship record in its tags: never received, or last received a plain LINBIT stream)');
  else {
    const rec = r.record;
    lines.push(
      `holds: ${rec.sourceId}${rec.snapshotName ? ` (${rec.snapshotName})` : ''}${rec.baseId ? `, received as an increment from ${rec.baseId}` : ', received as a full stream'}`,
    );
    lines.push(`received: ${new Date(rec.receivedUnixMs).toISOString()} (transfer ${rec.transferId})`);
    lines.push(`digest: ${rec.digest || '(the stream carried none)'}`);
    lines.push(`recorded in: LV tags ${r.tags.join(' ')}`);
  }
  lines.push(`last received snapshot: ${r.lastSnapshot ?? 'none'}`);
  lines.push(
    r.snapshots.length === 0
      ? 'kept snapshots: none'
      : `kept snapshots: ${r.snapshots.map((x) => `${x.lv}${x.snapshotName ? ` (${x.snapshotName})` : ''}`).join(', ')}`,
  );
  lines.push(r.diverged ? `diverged: yes (${r.divergence.join('; ')})` : 'diverged: no');
  const st = [r.staged.stagingLv && `staging LV ${r.staged.stagingLv}`, r.staged.commitJournal && `commit journal ${r.staged.commitJournal}`].filter(Boolean);
  lines.push(st.length === 0 ? 'staged: nothing' : `staged: ${st.join(', ')}`);
  return lines;
}
