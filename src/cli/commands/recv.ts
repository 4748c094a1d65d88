/** `thinship recv TARGET`: pipe mode, apply a LINBIT stream (1.0 or 1.1) from stdin. */
import { stat } from 'node:fs/promises';
import { ThinshipError } from '../../errors.js';
import { openVolume } from '../../device/volume.js';
import { decodeStream } from '../../stream/linbit.js';
import { applyMessages } from '../../receiver/receiver.js';
import { parseTargetName, resolveTarget } from '../../receiver/target.js';
import { ProgressLine } from '../progress.js';
import { formatBytes, formatRate } from '../format.js';

export interface RecvFlags { quiet?: boolean }

export async function recvPipeCommand(targetName: string, flags: RecvFlags): Promise<void> {
  if (process.stdin.isTTY) throw new ThinshipError('USAGE', 'recv reads a stream from stdin, which is a terminal: pipe a stream in (thinship send ... | thinship recv TARGET)');
  const spec = parseTargetName(targetName);
  const resolved = await resolveTarget(spec);
  try {
    // A file target that does not exist yet is created, sparse, at the stream's volume size.
    const existed = spec.kind === 'lvm' || (await stat(resolved.path).then(() => true, () => false));
    const target = await openVolume(resolved.path, { mode: 'write', create: !existed });
    try {
      let total: number | undefined;
      const progress = new ProgressLine('recv', undefined);
      const summary = await applyMessages(decodeStream(process.stdin), target, {
        onBegin: async (info) => {
          total = info.plannedDataBytes;
          if (!existed) {
            if (info.volumeSizeBytes === undefined) throw new ThinshipError('USAGE', `${resolved.path} does not exist and the stream does not say the volume size (a plain LINBIT stream): create the target first (truncate -s SIZE ${resolved.path})`);
            await target.extendTo(info.volumeSizeBytes);
          }
        },
        onProgress: (s) => progress.update(s.bytesWritten),
      }).finally(() => progress.finish());
      void total;
      if (!flags.quiet) {
        process.stderr.write(`thinship recv: ${targetName}: ${summary.records} records (${summary.dataRecords} data, ${summary.unmapRecords} unmap), ${formatBytes(summary.bytesWritten)} written, ${formatBytes(summary.bytesDiscarded)} discarded, ${summary.seconds.toFixed(2)} s (${formatRate(summary.bytesWritten, summary.seconds)})\n`);
      }
    } finally {
      await target.close();
    }
  } finally {
    await resolved.release();
  }
}
