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
import { decodeStream } from '../../stream/linbit/decode.js';
import { applyMessages } from '../../receiver/receiver.js';
import type { StreamMessage } from '../../stream/messages.js';
import { receivedRecord } from '../../receiver/target-state/record.js';
import { DEFAULT_KEEP_SNAPSHOTS, MAX_KEEP_SNAPSHOTS, targetStateOf } from '../../receiver/target-state/lvm-target.js';
import { describeLvmRecovery, recoverLvmTarget } from '../../receiver/target-state/lvm-commit.js';
import { checkLvmBegin, openLvmStage } from '../../receiver/target-state/lvm-stage.js';
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
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > MAX_KEEP_SNAPSHOTS)
    throw new ThinshipError(
      'USAGE',
      `--keep-snapshots must be an integer from 1 to ${MAX_KEEP_SNAPSHOTS} (the last received snapshot is what divergence is measured against), got "${v}"`,
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
  // A gRPC transfer's staging LV may still be resumed: only --force discards it (serve knows; a pipe recv does not).
  const recovered = await recoverLvmTarget(stateDir, vg, lv, { refuseOwned: flags.force !== true }).catch((e: unknown) => {
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

  // Every refusal before the staging LV exists (target-state/lvm-stage.ts, the same rules as serve's).
  const s = targetStateOf(vg, lv, recovered.rows);
  const from = await checkLvmBegin(
    s,
    {
      target: targetName,
      full,
      volumeSizeBytes: begin.volumeSizeBytes,
      sourceId: begin.sourceId,
      baseId: begin.baseId,
      force: flags.force === true,
      grow: flags.grow === true,
    },
    {
      pool: flags.pool,
      noPool: `--pool POOL creates it as a thin LV of ${begin.volumeSizeBytes} bytes in ${vg}/POOL`,
      warn: (w) => say(`warning: ${w}`),
    },
  ).catch((e: unknown) => {
    throw withFileHint(e, vg, targetName);
  });

  const stage = await openLvmStage({ stateDir, vg, lv, keepSnapshots: keep, from, volumeSizeBytes: begin.volumeSizeBytes });
  let summary;
  try {
    const progress = new ProgressLine('recv', begin.plannedDataBytes, parseProgressMode(flags.progress));
    summary = await applyMessages(rest, stage.handle, { staged: true, onProgress: (p) => progress.update(p.bytesWritten) }).finally(() => progress.finish());
  } catch (e) {
    await stage
      .discard()
      .catch((re: unknown) =>
        say(`could not remove the staging LV ${vg}/${stage.staging.lv}: ${(re as Error).message} (the next recv of ${targetName} removes it)`),
      );
    throw e;
  }
  const record = receivedRecord(summary.begin, { digest: summary.digest, volumeSizeBytes: stage.staging.sizeBytes });
  // Nothing but the staging LV (and its size) changed since the lvs above.
  const { snapshotName } = await stage.commit(record, [...recovered.rows, stage.staging]);
  if (!flags.quiet) {
    say(
      `${targetName}: ${summary.records} records (${summary.dataRecords} data, ${summary.unmapRecords} unmap), ${formatBytes(summary.bytesWritten)} written, ${formatBytes(summary.bytesDiscarded)} discarded, ${summary.seconds.toFixed(2)} s (${formatRate(summary.bytesWritten, summary.seconds)})${record ? `; ${targetName} now holds ${record.sourceId}, received snapshot ${vg}/${snapshotName}` : ''}`,
    );
  }
}
