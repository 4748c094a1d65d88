/** `thinship send [BASE] SNAP`: pipe mode, a LINBIT 1.1 stream on stdout. */
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ThinshipError } from '../../errors.js';
import { DEFAULT_MAX_OP_BYTES } from '../../thin/plan.js';
import { openSourceReader } from '../../sender/volume-reader.js';
import { sendMessages, READ_AHEAD_OPS } from '../../sender/sender.js';
import { ReadSlabs } from '../../sender/chunk-buffers.js';
import { encodeStream } from '../../stream/linbit/encode.js';
import { TokenBucket, throttled } from '../../stream/bandwidth.js';
import { GROUP_ENCODER_DATA_BYTES, GROUP_PREFETCH_BYTES, type FormatVersion } from '../../stream/linbit/format.js';
import { sourceSpecOf, parseByteCount, parseBandwidthFlag, parseChecksumFlag, type SourceFlags } from '../source-args.js';
import { DEFAULT_CHECKSUM } from '../../stream/integrity.js';
import { planForCommand } from '../plan-options.js';
import { ProgressLine, parseProgressMode } from '../progress.js';
import { formatBytes, formatRate } from '../format.js';

export interface SendFlags extends SourceFlags {
  format?: string;
  extensions?: boolean;
  checksum?: string;
  maxOpBytes?: string;
  quiet?: boolean;
  metadataReader?: string;
  bwlimit?: string;
  progress?: string;
}

/**
 * stdout, one write at a time: each buffer (a read slab, passed through by
 * the encoder, or the encoder's headers) goes back to `slabs` once stdout has
 * written it, and the next write starts then (stdout's own queue stays empty).
 */
function stdoutGivingBack(slabs: ReadSlabs): Writable {
  const out = process.stdout;
  const ignore = () => undefined; // a failed write's error arrives in its callback, below
  out.on('error', ignore);
  return new Writable({
    highWaterMark: 0,
    write(chunk: Buffer, _enc, done) {
      out.write(chunk, (e) => {
        if (!e) slabs.give(chunk);
        done(e);
      });
    },
    destroy(e, done) {
      out.off('error', ignore);
      done(e);
    },
    final(done) {
      out.off('error', ignore);
      done();
    },
  });
}

export async function sendPipeCommand(names: string[], flags: SendFlags): Promise<void> {
  if (process.stdout.isTTY)
    throw new ThinshipError(
      'USAGE',
      'refusing to write a binary stream to a terminal: pipe it (thinship send vg/snap | ssh host thinship recv vg/lv) or redirect it to a file',
    );
  const format = (flags.format ?? '1.1') as FormatVersion;
  if (format !== '1.0' && format !== '1.1') throw new ThinshipError('USAGE', `--format must be 1.0 or 1.1, not "${flags.format}"`);
  const extensions = format === '1.1' && flags.extensions !== false;
  const checksum = parseChecksumFlag(flags.checksum);
  if (checksum !== undefined && !extensions)
    throw new ThinshipError('USAGE', '--checksum needs the extensions (format 1.1, not --no-extensions): a plain LINBIT stream carries no checksums');
  const spec = sourceSpecOf(names, flags);
  const bwlimit = parseBandwidthFlag(flags.bwlimit);
  const progressMode = parseProgressMode(flags.progress);
  const t0 = performance.now();
  const maxOpBytes = flags.maxOpBytes === undefined ? DEFAULT_MAX_OP_BYTES : parseByteCount(flags.maxOpBytes, '--max-op-bytes');
  const p = await planForCommand(spec, flags, { withMappings: spec.kind === 'offline' });
  try {
    const reader = await openSourceReader(p);
    const progress = new ProgressLine('send', p.plan.totals.dataBytes, progressMode);
    let sent = { dataBytes: 0, unmapBytes: 0 };
    try {
      // The encoder reads up to a checksum group (32 MiB) ahead of the wire: progress counts
      // data as sent when as many bytes have left on stdout (records' headers make that a
      // slight overstatement mid-stream, never past what was read).
      let wireBytes = 0;
      // Read buffers are recycled once stdout has written them: enough slabs for every op in
      // flight (read ahead, the group held and the one pulled ahead, the write), the rest to the GC.
      const slabs = new ReadSlabs(maxOpBytes, READ_AHEAD_OPS + Math.ceil((GROUP_ENCODER_DATA_BYTES + GROUP_PREFETCH_BYTES) / maxOpBytes) + 2);
      const messages = sendMessages(p, reader, {
        buffers: slabs,
        // No fallback here: a pipe is one-way. A `thinship recv` older than BLAKE3 refuses its begin-info (docs/stream-format.md).
        checksum: extensions ? (checksum ?? DEFAULT_CHECKSUM) : 'none',
        onProgress: (x) => {
          sent = x;
        },
      });
      async function* counted(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
        for await (const chunk of source) {
          yield chunk;
          wireBytes += chunk.length;
          progress.update(Math.min(sent.dataBytes, wireBytes));
        }
      }
      // One burst is one largest record: the limit shapes the wire without splitting records.
      const bucket = bwlimit === undefined ? undefined : new TokenBucket(bwlimit, maxOpBytes + 4096);
      await pipeline(
        Readable.from(counted(throttled(encodeStream(messages, { format, extensions }), bucket)), { objectMode: false }),
        stdoutGivingBack(slabs),
      ).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_PREMATURE_CLOSE')
          throw new ThinshipError('IO_ERROR', 'stdout was closed before the stream was complete (did the receiving side exit?)', { cause: e });
        throw e;
      });
    } finally {
      progress.finish();
      await reader.close();
    }
    const secs = (performance.now() - t0) / 1000;
    if (!flags.quiet) {
      const t = p.plan.totals;
      process.stderr.write(
        `thinship send: ${p.mode} ${p.source.name}${p.base ? ` from ${p.base.name}` : ''}: ${t.dataOps + t.unmapOps + (format === '1.1' ? 2 : 0)} records, ${formatBytes(sent.dataBytes)} of data, ${formatBytes(sent.unmapBytes)} unmapped, ${secs.toFixed(2)} s (${formatRate(sent.dataBytes, secs)})\n`,
      );
    }
  } finally {
    await p.close();
  }
}
