/** `thinship target show vg/lv [--json]`: the lines of an LVM thin LV target's report (target-state/report.ts lvmTargetReport, from its LV tags). */
import type { LvmTargetReport } from '../../receiver/target-state/report.js';

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
