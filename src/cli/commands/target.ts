/**
 * `thinship target show TARGET [--json]`: what a file or block-device target
 * holds, as the receiver recorded it (target-state/): on this host (a file's
 * own record; a device's in --state-dir), or with --to HOST:PORT asked of a
 * `thinship serve` receiver by the GetTarget RPC (the identity's access rules apply).
 * LVM targets (vg/lv, on this host): target-lvm.ts.
 */
import { applyTargetStateEnv } from '../target-state-env.js';
import { open } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { resolve } from 'node:path';
import { ThinshipError } from '../../errors.js';
import { lvmTargetReport, targetReportOf, type TargetReport } from '../../receiver/target-state/report.js';
import { DEFAULT_STATE_DIR } from '../../receiver/target-state/device-stage.js';
import type { TlsFlags } from './send-grpc.js';

export type { TargetReport };
import { parseTargetName } from '../../receiver/target.js';
import { thinLvOfDevice } from '../../device/block-info.js';
import { lvmReportLines } from './target-lvm.js';
import { DEFAULT_RECV_STATE_DIR } from './recv-lvm.js';

export interface TargetShowFlags extends TlsFlags {
  json?: boolean;
  stateDir?: string;
  to?: string;
}

export async function targetReport(path: string, stateDir = DEFAULT_STATE_DIR): Promise<TargetReport> {
  let fh;
  try {
    // O_NONBLOCK: a FIFO at the name must not hang the query.
    fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ThinshipError('NOT_FOUND', `target ${path} does not exist`);
    throw e;
  }
  try {
    return await targetReportOf(fh.fd, path, resolve(stateDir));
  } finally {
    await fh.close();
  }
}

async function remoteReport(target: string, flags: TargetShowFlags): Promise<TargetReport> {
  const { ReceiverClient } = await import('../../rpc/client.js');
  const { tlsFilesOf } = await import('./send-grpc.js');
  const client = await ReceiverClient.connect({
    address: flags.to!,
    tls: tlsFilesOf(flags),
    insecure: flags.insecure,
    allowInsecureRemote: flags.allowInsecureRemote,
    serverName: flags.serverName,
  });
  try {
    return await client.getTarget(target);
  } finally {
    client.close();
  }
}

export async function targetCommand(action: string, path: string, flags: TargetShowFlags): Promise<void> {
  applyTargetStateEnv();
  if (action !== 'show') throw new ThinshipError('USAGE', `target: unknown action "${action}" (show)`);
  const spec = parseTargetName(path);
  // A thin LV's device path (/dev/VG/LV) is the LV, as recv takes it.
  const lv = flags.to !== undefined ? undefined : spec.kind === 'lvm' ? spec : await thinLvOfDevice(spec.path);
  if (lv) {
    const l = await lvmTargetReport(lv.vg, lv.lv, flags.stateDir ?? DEFAULT_RECV_STATE_DIR);
    process.stdout.write(flags.json ? JSON.stringify(l, null, 2) + '\n' : lvmReportLines(l).join('\n') + '\n');
    return;
  }
  const r = flags.to !== undefined ? await remoteReport(path, flags) : await targetReport(path, flags.stateDir);
  if (flags.json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return;
  }
  const lines = [`target: ${r.target}${r.kind === 'block-device' ? ' (block device)' : r.kind === 'lvm' ? ' (LVM thin LV)' : ''}`];
  if (r.identity !== undefined) lines.push(`identity: ${r.identity}`);
  if (!r.record) lines.push('holds: unknown (no thinship record: never received, or last received a plain LINBIT stream)');
  else {
    const rec = r.record.record;
    lines.push(
      `holds: ${rec.sourceId}${rec.snapshotName ? ` (${rec.snapshotName})` : ''}${rec.baseId ? `, received as an increment from ${rec.baseId}` : ', received as a full stream'}`,
    );
    lines.push(`received: ${new Date(rec.receivedUnixMs).toISOString()} (transfer ${rec.transferId})`);
    lines.push(`digest: ${rec.digest || '(the stream carried none)'}`);
    const where = {
      xattr: 'extended attributes user.thinship.*',
      sidecar: 'sidecar file beside the target',
      'state-dir': `the receiver's state directory${r.record.file ? ` (${r.record.file})` : ''}`,
      'lv-tags': 'LV tags thinship.*',
    };
    lines.push(`recorded in: ${where[r.record.store]}`);
  }
  lines.push(
    r.diverged
      ? `diverged: yes (${r.divergence.join('; ')})`
      : `diverged: no${r.divergenceUnchecked ? ` as far as can be seen (${r.divergenceUnchecked})` : ''}`,
  );
  if (r.kind === 'lvm') {
    lines.push(`last received snapshot: ${r.lastSnapshot ?? 'none'}`);
    lines.push(`kept snapshots: ${r.keptSnapshots?.length ? r.keptSnapshots.join(', ') : 'none'}`);
  }
  lines.push(r.staged.length === 0 ? 'staged: nothing' : `staged: ${r.staged.map((s) => `${s.kind}${s.file ? ` ${s.file}` : ''}`).join(', ')}`);
  process.stdout.write(lines.join('\n') + '\n');
}
