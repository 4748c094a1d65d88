/**
 * Pipe mode into an LVM thin LV (`thinship recv vg/lv`): what an earlier apply
 * left is finished or removed first (lvm-commit.ts); the begin is checked
 * against the record in the target's tags (base, divergence from its last
 * received snapshot, open target, size) before anything is written; the
 * stream goes to a staging LV that becomes the target at its validated end,
 * followed by a received snapshot.
 */
import { existsSync } from 'node:fs';
import { ThinshipError } from '../../errors.js';
import { openVolume, type VolumeHandle } from '../../device/volume.js';
import { decodeStream } from '../../stream/linbit/decode.js';
import { applyMessages } from '../../receiver/receiver.js';
import { lvDevicePath } from '../../thin/names.js';
import type { StreamMessage } from '../../stream/messages.js';
import { receivedRecord } from '../../receiver/target-state/record.js';
import { checkTargetRules } from '../../receiver/target-state/rules.js';
import { DEFAULT_KEEP_SNAPSHOTS, lvmDivergence, receivedSnapshotName, targetStateOf, type LvRow } from '../../receiver/target-state/lvm-target.js';
import { commitLvmStage, createStaging, describeLvmRecovery, extendStaging, recoverLvmTarget, removeStaging } from '../../receiver/target-state/lvm-commit.js';
import { ProgressLine, parseProgressMode } from '../progress.js';
import { formatBytes, formatRate } from '../format.js';

/** Where pipe-mode `recv` keeps its LVM commit journals unless --state-dir says otherwise (the receiver config's default too). */
export const DEFAULT_RECV_STATE_DIR = '/var/lib/thinship';

export interface RecvLvmFlags {
  quiet?: boolean;
  progress?: string;
  force?: boolean;
  grow?: boolean;
  keepSnapshots?: string;
  pool?: string;
  stateDir?: string;
}

function keepSnapshotsOf(v: string | undefined): number {
  if (v === undefined) return DEFAULT_KEEP_SNAPSHOTS;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 1000)
    throw new ThinshipError(
      'USAGE',
      `--keep-snapshots must be an integer from 1 to 1000 (the last received snapshot is what divergence is measured against), got "${v}"`,
    );
  return Number(v);
}

/**
 * `readInput`: stdin's first bytes, undefined at EOF without any. It is read
 * after the recovery, so that a wrong target is an error whatever the input,
 * and an empty stream (thin_send 1.0 of identical snapshots) still finishes
 * an interrupted commit.
 */
/** `recv dir/file.img` for a file not made yet reads as vg/lv: when `vg` exists here, say how to mean the file. */
function withFileHint(e: unknown, vg: string, targetName: string): unknown {
  if ((e as ThinshipError).code !== 'NOT_FOUND' || !existsSync(vg)) return e;
  return new ThinshipError(
    'NOT_FOUND',
    `${(e as Error).message}; target ${targetName} was read as an LVM name (vg/lv), but ${vg} exists here: to receive into a file, write ./${targetName}`,
    { cause: e },
  );
}

export async function recvIntoLvm(
  vg: string,
  lv: string,
  targetName: string,
  readInput: () => Promise<AsyncIterable<Buffer> | undefined>,
  flags: RecvLvmFlags,
): Promise<void> {
  const keep = keepSnapshotsOf(flags.keepSnapshots);
  const stateDir = flags.stateDir ?? DEFAULT_RECV_STATE_DIR;
  const say = (m: string) => process.stderr.write(`thinship recv: ${m}\n`);
  const recovered = await recoverLvmTarget(stateDir, vg, lv).catch((e: unknown) => {
    throw withFileHint(e, vg, targetName);
  });
  for (const a of recovered.actions) say(describeLvmRecovery(targetName, a));
  const input = await readInput();
  if (input === undefined) {
    process.stderr.write('Empty input.\n');
    return;
  }

  const it = decodeStream(input)[Symbol.asyncIterator]();
  const first = await it.next();
  const begin = !first.done && first.value.type === 'begin' ? first.value.info : undefined;
  if (!begin) throw new ThinshipError('BAD_STREAM', `the stream does not begin with a begin record; nothing was written to ${targetName}`);
  const rest: AsyncIterable<StreamMessage> = {
    [Symbol.asyncIterator]: () => {
      let gave = false;
      return {
        next: async () => {
          if (!gave) {
            gave = true;
            return first;
          }
          return it.next();
        },
        return: async () => (await it.return?.()) ?? { done: true, value: undefined },
      };
    },
  };
  const full = begin.incremental === false && begin.volumeSizeBytes !== undefined;

  // Every refusal before the staging LV exists.
  const s = targetStateOf(vg, lv, recovered.rows);
  let from: Parameters<typeof createStaging>[0]['from'];
  if (!s.target) {
    if (!full)
      throw withFileHint(
        new ThinshipError(
          'NOT_FOUND',
          `target ${targetName} does not exist: ${begin.baseId ? `an incremental stream applies only to a target holding its base ${begin.baseId}` : 'a stream that does not say the volume size (a plain LINBIT stream) cannot create it'}`,
        ),
        vg,
        targetName,
      );
    if (!flags.pool)
      throw withFileHint(
        new ThinshipError(
          'NOT_FOUND',
          `target ${targetName} does not exist: --pool POOL creates it as a thin LV of ${begin.volumeSizeBytes} bytes in ${vg}/POOL`,
        ),
        vg,
        targetName,
      );
    from = { pool: flags.pool, sizeBytes: begin.volumeSizeBytes! };
  } else {
    const t = s.target;
    if (t.thinId < 0 || !t.pool)
      throw new ThinshipError(
        'NOT_THIN',
        `target ${targetName} is not a thin volume (attr ${t.attr}): thinship receives into thin LVs so that a staging snapshot and discards cost nothing`,
      );
    if (t.open)
      throw new ThinshipError(
        'TARGET_BUSY',
        `target ${targetName} is open (mounted or held by a process: lvs -o lv_device_open): nothing was written; unmount or close it first`,
        { details: { target: targetName } },
      );
    const why = await lvmDivergence(s);
    let rollbackTo: LvRow | undefined;
    if (why.length > 0) {
      const holds = `${s.record!.sourceId}${s.record!.snapshotName ? ` (${s.record!.snapshotName})` : ''}`;
      if (!flags.force)
        throw new ThinshipError(
          'DIVERGED',
          `target ${targetName} was written since it received ${holds}: ${why.join('; ')}; nothing was written (--force rolls it back to its last received snapshot, as zfs recv -F does)`,
          { details: { target: targetName, holds: s.record!.sourceId, divergence: why } },
        );
      rollbackTo = full ? undefined : s.lastSnapshot;
      say(
        `warning: --force: target ${targetName} had diverged from ${holds} (${why.join('; ')}); ${full ? 'the full stream replaces it' : rollbackTo ? `rolled back to ${vg}/${rollbackTo.lv} before the increment` : 'its last received snapshot is gone: the increment is applied over it'}`,
      );
    }
    const rules = checkTargetRules(
      { target: targetName, incremental: !full, sourceId: begin.sourceId, baseId: begin.baseId },
      s.record ? { record: s.record } : undefined,
      undefined,
      { force: flags.force === true },
    );
    for (const w of rules.warnings) say(`warning: ${w}`);
    const baseSize = rollbackTo?.sizeBytes ?? t.sizeBytes;
    if (!full && begin.volumeSizeBytes !== undefined && baseSize < begin.volumeSizeBytes && !flags.grow) {
      throw new ThinshipError(
        'TARGET_TOO_SMALL',
        `the stream is for a volume of ${begin.volumeSizeBytes} bytes but target ${targetName} has only ${baseSize} bytes; nothing was written (--grow extends it)`,
      );
    }
    from = full ? { pool: t.pool, sizeBytes: begin.volumeSizeBytes! } : { snapshotOf: rollbackTo?.lv ?? lv };
  }

  const staging = await createStaging({ vg, lv, from });
  let handle: VolumeHandle | undefined;
  let summary;
  try {
    if ('snapshotOf' in from && begin.volumeSizeBytes !== undefined && staging.sizeBytes < begin.volumeSizeBytes)
      await extendStaging(vg, lv, begin.volumeSizeBytes);
    handle = await openVolume(lvDevicePath(vg, staging.lv), { mode: 'write' });
    const progress = new ProgressLine('recv', begin.plannedDataBytes, parseProgressMode(flags.progress));
    summary = await applyMessages(rest, handle, { staged: true, onProgress: (p) => progress.update(p.bytesWritten) }).finally(() => progress.finish());
    await handle.flush();
    await handle.close();
    handle = undefined;
  } catch (e) {
    await handle?.close().catch(() => undefined);
    await removeStaging(vg, lv).catch((re: unknown) =>
      say(`could not remove the staging LV ${vg}/${staging.lv}: ${(re as Error).message} (the next recv of ${targetName} removes it)`),
    );
    throw e;
  }
  const b = summary.begin;
  const record = receivedRecord(b, { digest: summary.digest, volumeSizeBytes: staging.sizeBytes });
  // Nothing but the staging LV (and its size) changed since the lvs above.
  const rows = [...recovered.rows, staging];
  const snapshotName = record ? receivedSnapshotName(lv, record, rows) : '';
  // The stream was applied and validated: from the journal on, a crash finishes this commit.
  await commitLvmStage({ stateDir, vg, lv, staging, targetUuid: s.target?.uuid ?? '', record, snapshotName, keepSnapshots: keep, rows });
  if (!flags.quiet) {
    say(
      `${targetName}: ${summary.records} records (${summary.dataRecords} data, ${summary.unmapRecords} unmap), ${formatBytes(summary.bytesWritten)} written, ${formatBytes(summary.bytesDiscarded)} discarded, ${summary.seconds.toFixed(2)} s (${formatRate(summary.bytesWritten, summary.seconds)})${record ? `; ${targetName} now holds ${record.sourceId}, received snapshot ${vg}/${snapshotName}` : ''}`,
    );
  }
}
