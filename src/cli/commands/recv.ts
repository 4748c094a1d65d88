/** `thinship recv TARGET`: pipe mode, apply a LINBIT stream (1.0 or 1.1) from stdin. */
import { applyTargetStateEnv } from '../target-state-env.js';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ThinshipError } from '../../errors.js';
import { openVolume } from '../../device/volume.js';
import { decodeStream } from '../../stream/linbit/decode.js';
import { applyMessages } from '../../receiver/receiver.js';
import { parseTargetName, resolveTarget } from '../../receiver/target.js';
import { ProgressLine, parseProgressMode } from '../progress.js';
import type { BeginInfo, StreamMessage } from '../../stream/messages.js';
import {
  DEFAULT_STATE_DIR,
  isBlockDevicePath,
  openDeviceStage,
  recoverDeviceJournals,
  requireDeviceIdentity,
} from '../../receiver/target-state/device-stage.js';
import { resolve } from 'node:path';
import { openFileStage, recoverFileTarget, type FileStage, type RecoveryAction } from '../../receiver/target-state/staging.js';
import { readFileRecord, receivedRecord } from '../../receiver/target-state/record.js';
import { checkTargetRules, divergenceOf } from '../../receiver/target-state/rules.js';
import { formatBytes, formatRate } from '../format.js';
import { recvIntoLvm, type RecvLvmFlags } from './recv-lvm.js';
import { thinLvOfDevice } from '../../device/block-info.js';

export interface RecvFlags extends RecvLvmFlags {
  quiet?: boolean;
  progress?: string;
  force?: boolean;
  grow?: boolean;
  stateDir?: string;
}

export async function recvPipeCommand(targetName: string, flags: RecvFlags): Promise<void> {
  applyTargetStateEnv();
  if (process.stdin.isTTY)
    throw new ThinshipError('USAGE', 'recv reads a stream from stdin, which is a terminal: pipe a stream in (thinship send ... | thinship recv TARGET)');
  const spec = parseTargetName(targetName);
  // A thin LV named by its device path (/dev/VG/LV, /dev/mapper/VG-LV) is the LV, not a raw device: the same route as vg/lv.
  const lv = spec.kind === 'lvm' ? spec : await thinLvOfDevice(spec.path);
  if (lv) {
    // LVM thin LVs: staged in a thin snapshot, committed by renames, recorded in LV tags (recv-lvm.ts).
    await recvIntoLvm(lv.vg, lv.lv, targetName, () => firstChunkOrEof(process.stdin), flags);
    return;
  }
  // A wrong target is an error whatever the input: resolve it first (read-only for a file; an inactive
  // LV is activated here and deactivated again by release()).
  const resolved = await resolveTarget(spec);
  try {
    // Zero bytes is a format 1.0 stream without records (thin_send 1.0 for an empty volume or identical
    // snapshots). Like thin_recv: say so and succeed, without opening or creating the target.
    const input = await firstChunkOrEof(process.stdin);
    if (input === undefined) {
      process.stderr.write('Empty input.\n');
      return;
    }
    // Regular files (existing or not): atomic apply with a record of what the target holds (target-state/).
    if (spec.kind === 'path' && (await isFileOrMissing(resolved.path))) {
      await recvIntoFile(resolved.path, targetName, input, flags);
      return;
    }
    // Raw block devices: journaled, recorded in the state directory (target-state/device-stage.ts).
    if (spec.kind === 'path' && (await isBlockDevicePath(resolved.path))) {
      await recvIntoDevice(resolved.path, targetName, input, flags);
      return;
    }
    // Anything else (neither a regular file nor a block device): applied in place.
    const existed = await stat(resolved.path).then(
      () => true,
      () => false,
    );
    const target = await openVolume(resolved.path, { mode: 'write', create: !existed });
    try {
      let total: number | undefined;
      const progress = new ProgressLine('recv', undefined, parseProgressMode(flags.progress));
      const summary = await applyMessages(decodeStream(input), target, {
        onBegin: async (info) => {
          total = info.plannedDataBytes;
          progress.setTotal(total);
          if (!existed) {
            if (info.volumeSizeBytes === undefined)
              throw new ThinshipError(
                'USAGE',
                `${resolved.path} does not exist and the stream does not say the volume size (a plain LINBIT stream): create the target first (truncate -s SIZE ${resolved.path})`,
              );
            await target.extendTo(info.volumeSizeBytes);
          }
        },
        onProgress: (s) => progress.update(s.bytesWritten),
      }).finally(() => progress.finish());
      void total;
      if (!flags.quiet) {
        process.stderr.write(
          `thinship recv: ${targetName}: ${summary.records} records (${summary.dataRecords} data, ${summary.unmapRecords} unmap), ${formatBytes(summary.bytesWritten)} written, ${formatBytes(summary.bytesDiscarded)} discarded, ${summary.seconds.toFixed(2)} s (${formatRate(summary.bytesWritten, summary.seconds)})\n`,
        );
      }
    } finally {
      await target.close();
    }
  } finally {
    await resolved.release();
  }
}

async function isFileOrMissing(path: string): Promise<boolean> {
  return stat(path).then(
    (st) => st.isFile(),
    (e: NodeJS.ErrnoException) => e.code === 'ENOENT',
  );
}

/**
 * Pipe mode into a regular file: leftovers of an earlier, broken apply are
 * rolled back first; the begin is checked against the target's record before
 * anything is written; the stream goes to a staging file or behind an undo
 * journal and becomes the target only at its validated end.
 */
async function recvIntoFile(path: string, targetName: string, input: AsyncIterable<Buffer>, flags: RecvFlags): Promise<void> {
  for (const a of await recoverFileTarget(path)) process.stderr.write(`thinship recv: ${targetName}: ${describeRecovery(a)}\n`);
  const { begin, rest } = await peekBegin(input);
  const full = begin?.incremental === false && begin.volumeSizeBytes !== undefined;
  const existed = await stat(path).then(
    () => true,
    () => false,
  );
  const target = existed ? await openVolume(path, { mode: 'write' }) : undefined;
  let stage: FileStage | undefined;
  try {
    const st = target ? await target.stat() : undefined;
    const rec = target ? await readFileRecord(target.fd, path) : undefined;
    if (begin) {
      // Every refusal before the first byte is written.
      if (target && begin.volumeSizeBytes !== undefined && target.sizeBytes > 0 && target.sizeBytes < begin.volumeSizeBytes && !flags.grow) {
        // (An empty file holds nothing to protect: it is a new target.)
        throw new ThinshipError(
          'TARGET_TOO_SMALL',
          `the stream is for a volume of ${begin.volumeSizeBytes} bytes but target ${path} has only ${target.sizeBytes} bytes; nothing was written (--grow extends it)`,
        );
      }
      if (!target && !full) {
        if (begin.volumeSizeBytes === undefined)
          throw new ThinshipError(
            'USAGE',
            `${path} does not exist and the stream does not say the volume size (a plain LINBIT stream): create the target first (truncate -s SIZE ${path})`,
          );
        throw new ThinshipError(
          'NOT_FOUND',
          `target ${path} does not exist: an incremental stream applies only to a target holding its base ${begin.baseId ?? ''}`,
        );
      }
      const rules = checkTargetRules({ target: path, incremental: !full, sourceId: begin.sourceId, baseId: begin.baseId }, rec, st, {
        force: flags.force === true,
      });
      for (const w of rules.warnings) process.stderr.write(`thinship recv: warning: ${w}\n`);
      stage = await openFileStage({
        targetPath: path,
        target,
        mode: full ? 'full' : 'in-place',
        volumeSizeBytes: begin.volumeSizeBytes,
        owner: 'pipe',
        resume: false,
        grow: flags.grow === true || target?.sizeBytes === 0,
        recordIsClean: rec !== undefined && st !== undefined && divergenceOf(rec, st).length === 0,
      });
    }
    const progress = new ProgressLine('recv', begin?.plannedDataBytes, parseProgressMode(flags.progress));
    let summary;
    try {
      // No begin: applyMessages refuses the stream before a stage exists (target untouched).
      const into = stage?.handle ?? target;
      if (into === undefined)
        throw new ThinshipError('BAD_STREAM', `the stream does not begin with a begin record, so target ${path} (which does not exist) was not created`);
      summary = await applyMessages(rest, into, { staged: true, onProgress: (s) => progress.update(s.bytesWritten) }).finally(() => progress.finish());
    } catch (e) {
      if (stage) await stage.rollback();
      stage = undefined;
      throw e;
    }
    const b = summary.begin;
    const record = receivedRecord(b, { digest: summary.digest, volumeSizeBytes: stage!.handle.sizeBytes });
    await stage!.commit(record);
    stage = undefined;
    if (!flags.quiet) {
      process.stderr.write(
        `thinship recv: ${targetName}: ${summary.records} records (${summary.dataRecords} data, ${summary.unmapRecords} unmap), ${formatBytes(summary.bytesWritten)} written, ${formatBytes(summary.bytesDiscarded)} discarded, ${summary.seconds.toFixed(2)} s (${formatRate(summary.bytesWritten, summary.seconds)})${record ? `; ${targetName} now holds ${record.sourceId}` : ''}\n`,
      );
    }
  } finally {
    if (stage) await stage.rollback().catch(() => undefined);
    await target?.close().catch(() => undefined);
  }
}

/** The stream's begin (undefined when it does not start with one), and every message (the begin included). */
async function peekBegin(input: AsyncIterable<Buffer>): Promise<{ begin: BeginInfo | undefined; rest: AsyncIterable<StreamMessage> }> {
  const it = decodeStream(input)[Symbol.asyncIterator]();
  const first = await it.next();
  const begin = !first.done && first.value.type === 'begin' ? first.value.info : undefined;
  const rest: AsyncIterable<StreamMessage> = {
    [Symbol.asyncIterator]: () => {
      let gave = first.done === true;
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
  return { begin, rest };
}

/**
 * Pipe mode into a raw block device: opened exclusively (O_EXCL: refused while
 * mounted or held), what an earlier apply left in the state directory rolled
 * back, the begin checked against the device's record there, every byte
 * written behind an undo journal, recorded at the validated end.
 */
async function recvIntoDevice(path: string, targetName: string, input: AsyncIterable<Buffer>, flags: RecvFlags): Promise<void> {
  const stateDir = resolve(flags.stateDir ?? DEFAULT_STATE_DIR);
  const target = await openVolume(path, { mode: 'write' });
  let stage: FileStage | undefined;
  try {
    const st = await target.stat();
    const say = (a: RecoveryAction) => process.stderr.write(`thinship recv: ${targetName}: ${describeRecovery(a)}\n`);
    // Before anything is read: the device is put back to its last complete snapshot.
    const id = await requireDeviceIdentity(st.rdev, targetName);
    for (const a of await recoverDeviceJournals(stateDir, { key: id.key, open: { handle: target, rdev: st.rdev } })) say(a);
    const { begin, rest } = await peekBegin(input);
    if (begin) {
      const full = begin.incremental === false && begin.volumeSizeBytes !== undefined;
      stage = await openDeviceStage({
        stateDir,
        targetName,
        target,
        rdev: st.rdev,
        owner: 'pipe',
        resume: false,
        force: flags.force === true,
        grow: flags.grow === true,
        stream: { target: targetName, incremental: !full, sourceId: begin.sourceId, baseId: begin.baseId, volumeSizeBytes: begin.volumeSizeBytes },
        warn: (w) => process.stderr.write(`thinship recv: warning: ${w}\n`),
        recovered: say,
      });
    }
    const progress = new ProgressLine('recv', begin?.plannedDataBytes, parseProgressMode(flags.progress));
    let summary;
    try {
      // No begin: applyMessages refuses the stream before anything is written.
      summary = await applyMessages(rest, stage?.handle ?? target, { staged: true, onProgress: (s) => progress.update(s.bytesWritten) }).finally(() =>
        progress.finish(),
      );
    } catch (e) {
      if (stage) await stage.rollback();
      stage = undefined;
      throw e;
    }
    const b = summary.begin;
    const record = receivedRecord(b, { digest: summary.digest, volumeSizeBytes: target.sizeBytes });
    await stage!.commit(record);
    stage = undefined;
    if (!flags.quiet) {
      process.stderr.write(
        `thinship recv: ${targetName}: ${summary.records} records (${summary.dataRecords} data, ${summary.unmapRecords} unmap), ${formatBytes(summary.bytesWritten)} written, ${formatBytes(summary.bytesDiscarded)} discarded, ${summary.seconds.toFixed(2)} s (${formatRate(summary.bytesWritten, summary.seconds)})${record ? `; ${targetName} now holds ${record.sourceId} (recorded in ${stateDir})` : ''}\n`,
      );
    }
  } finally {
    if (stage) await stage.rollback().catch(() => undefined);
    await target.close().catch(() => undefined);
  }
}

export function describeRecovery(a: RecoveryAction): string {
  switch (a.action) {
    case 'rolled-back':
      return `an earlier apply was interrupted: rolled back from its undo journal (${a.file}); the target holds its previous snapshot`;
    case 'commit-finished':
      return `an earlier apply was interrupted while committing: commit finished from ${a.file}; the target holds the new snapshot`;
    case 'staging-removed':
      return `an earlier apply was interrupted: its staging file ${a.file} was removed; the target holds its previous snapshot`;
    case 'journal-dropped':
      return `an undo journal ${a.file} of a file that is no longer the target was removed`;
    case 'journal-kept':
      return `an undo journal ${a.file} of an interrupted apply could not be rolled back now (${a.why ?? 'unknown'}); it is kept`;
  }
}

/** Waits for stdin's first bytes: undefined at EOF without any, else an iterable of every chunk (the first included). */
async function firstChunkOrEof(stdin: Readable): Promise<AsyncIterable<Buffer> | undefined> {
  const it: AsyncIterator<Buffer> = stdin[Symbol.asyncIterator]();
  let first: IteratorResult<Buffer>;
  do first = await it.next();
  while (!first.done && first.value.length === 0);
  if (first.done) return undefined;
  const head = first.value;
  return {
    [Symbol.asyncIterator]() {
      let gaveHead = false;
      return {
        next: async () => {
          if (gaveHead) return it.next();
          gaveHead = true;
          return { done: false, value: head };
        },
        // The decoder closes its input when it stops early: destroy stdin then.
        return: async () => (await it.return?.()) ?? { done: true, value: undefined },
      };
    },
  };
}
