/** `thinship target show TARGET [--json]`: what a file target holds, as recorded on it (target-state/); LVM targets: target-lvm.ts. */
import { applyTargetStateEnv } from '../target-state-env.js';
import { open, readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { readFileRecord } from '../../receiver/target-state/record.js';
import { divergenceOf } from '../../receiver/target-state/rules.js';
import { parseTargetName } from '../../receiver/target.js';
import { lvmReportLines, lvmTargetReport } from './target-lvm.js';

export interface TargetShowFlags { json?: boolean; stateDir?: string }

export interface TargetReport {
  target: string;
  /** What the target holds; null when it has no record (never received, or received a plain LINBIT stream). */
  record: Awaited<ReturnType<typeof readFileRecord>> | null;
  diverged: boolean;
  divergence: string[];
  /** Staging files and undo journals beside the target: an apply in progress, resumable, or interrupted (rolled back at the next apply or receiver start). */
  staged: { file: string; kind: 'staging' | 'undo-journal' }[];
}

export async function targetReport(path: string): Promise<TargetReport> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ThinshipError('NOT_FOUND', `target ${path} does not exist`);
    throw e;
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) throw new ThinshipError('USAGE', `target ${path} is not a regular file: thinship records what file targets hold (block devices and LVs: not yet)`);
    const record = (await readFileRecord(fh.fd, path)) ?? null;
    const divergence = record ? divergenceOf(record, st) : [];
    const prefix = `.${basename(path)}.thinship-`;
    const staged: TargetReport['staged'] = [];
    for (const n of await readdir(dirname(path))) {
      if (!n.startsWith(prefix)) continue;
      const m = /^(staging|undo)-[0-9a-f]{16}$/.exec(n.slice(prefix.length));
      if (m) staged.push({ file: join(dirname(path), n), kind: m[1] === 'staging' ? 'staging' : 'undo-journal' });
    }
    return { target: path, record, diverged: divergence.length > 0, divergence, staged };
  } finally {
    await fh.close();
  }
}

export async function targetCommand(action: string, path: string, flags: TargetShowFlags): Promise<void> {
  applyTargetStateEnv();
  if (action !== 'show') throw new ThinshipError('USAGE', `target: unknown action "${action}" (show)`);
  const spec = parseTargetName(path);
  if (spec.kind === 'lvm') {
    const l = await lvmTargetReport(spec.vg, spec.lv, flags.stateDir);
    process.stdout.write(flags.json ? JSON.stringify(l, null, 2) + '\n' : lvmReportLines(l).join('\n') + '\n');
    return;
  }
  const r = await targetReport(path);
  if (flags.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return;
  }
  const lines = [`target: ${r.target}`];
  if (!r.record) lines.push('holds: unknown (no thinship record: never received, or last received a plain LINBIT stream)');
  else {
    const rec = r.record.record;
    lines.push(`holds: ${rec.sourceId}${rec.snapshotName ? ` (${rec.snapshotName})` : ''}${rec.baseId ? `, received as an increment from ${rec.baseId}` : ', received as a full stream'}`);
    lines.push(`received: ${new Date(rec.receivedUnixMs).toISOString()} (transfer ${rec.transferId})`);
    lines.push(`digest: ${rec.digest || '(the stream carried none)'}`);
    lines.push(`recorded in: ${r.record.store === 'xattr' ? 'extended attributes user.thinship.*' : 'sidecar file beside the target'}`);
  }
  lines.push(r.diverged ? `diverged: yes (${r.divergence.join('; ')})` : 'diverged: no');
  lines.push(r.staged.length === 0 ? 'staged: nothing' : `staged: ${r.staged.map((s) => `${s.kind} ${s.file}`).join(', ')}`);
  process.stdout.write(lines.join('\n') + '\n');
}
