/** `thinship recv TARGET`: pipe mode, apply a LINBIT stream (1.0 or 1.1) from stdin. */
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ThinshipError } from '../../errors.js';
import { openVolume } from '../../device/volume.js';
import { decodeStream } from '../../stream/linbit/decode.js';
import { applyMessages } from '../../receiver/receiver.js';
import { parseTargetName, resolveTarget } from '../../receiver/target.js';
import { ProgressLine, parseProgressMode } from '../progress.js';
import { formatBytes, formatRate } from '../format.js';

export interface RecvFlags { quiet?: boolean; progress?: string }

export async function recvPipeCommand(targetName: string, flags: RecvFlags): Promise<void> {
  if (process.stdin.isTTY) throw new ThinshipError('USAGE', 'recv reads a stream from stdin, which is a terminal: pipe a stream in (thinship send ... | thinship recv TARGET)');
  const spec = parseTargetName(targetName);
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
    // A file target that does not exist yet is created, sparse, at the stream's volume size.
    const existed = spec.kind === 'lvm' || (await stat(resolved.path).then(() => true, () => false));
    const target = await openVolume(resolved.path, { mode: 'write', create: !existed });
    try {
      let total: number | undefined;
      const progress = new ProgressLine('recv', undefined, parseProgressMode(flags.progress));
      const summary = await applyMessages(decodeStream(input), target, {
        onBegin: async (info) => {
          total = info.plannedDataBytes;
          progress.setTotal(total);
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
