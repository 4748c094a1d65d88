/**
 * `thinship demo`: the built-in default. Builds a small offline thin pool
 * (thin_restore + a data file) holding two snapshots of one volume, shows the
 * plans, sends full then incremental through the LINBIT byte stream into a
 * sparse file target, and verifies the target byte for byte after each step.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { ThinshipError } from '../../errors.js';
import { createDemoPool, type DemoPool } from '../../thin/demo-pool.js';
import { planSend, type SourceSpec } from '../../thin/planner.js';
import { openSourceReader, type VolumeReader } from '../../sender/volume-reader.js';
import { sendMessages } from '../../sender/sender.js';
import { encodeStream, decodeStream } from '../../stream/linbit.js';
import { applyMessages, type ApplySummary } from '../../receiver/receiver.js';
import { openVolume, type VolumeHandle } from '../../device/volume.js';
import { formatBytes, formatRate } from '../format.js';

const out = (s: string) => process.stdout.write(s + '\n');

async function sendInto(spec: SourceSpec, target: VolumeHandle): Promise<{ summary: ApplySummary; streamBytes: number }> {
  const p = await planSend(spec, { withMappings: true });
  try {
    const t = p.plan.totals;
    out(`  plan: ${p.mode} ${p.source.name}${p.base ? ` from ${p.base.name}` : ''}: ${formatBytes(t.dataBytes)} to send in ${t.dataOps} ops, ${formatBytes(t.unmapBytes)} to unmap in ${t.unmapOps} ops`);
    const reader = await openSourceReader(p);
    try {
      const wire = new PassThrough();
      let streamBytes = 0;
      wire.on('data', (b: Buffer) => { streamBytes += b.length; });
      const counted = new PassThrough();
      wire.pipe(counted);
      const sending = pipeline(Readable.from(encodeStream(sendMessages(p, reader))), wire);
      const summary = await applyMessages(decodeStream(counted), target);
      await sending;
      return { summary, streamBytes };
    } finally {
      await reader.close();
    }
  } finally {
    await p.close();
  }
}

async function volumeDigest(read: (buf: Buffer, off: number) => Promise<unknown>, sizeBytes: number): Promise<string> {
  const h = createHash('sha256');
  const buf = Buffer.alloc(1024 * 1024);
  for (let off = 0; off < sizeBytes; off += buf.length) {
    const piece = buf.subarray(0, Math.min(buf.length, sizeBytes - off));
    await read(piece, off);
    h.update(piece);
  }
  return h.digest('hex');
}

async function verify(pool: DemoPool, devId: number, target: VolumeHandle): Promise<string> {
  const p = await planSend({ kind: 'offline', metadataPath: pool.metadataPath, dataPath: pool.dataPath, snapDevId: devId, volumeSizeBytes: pool.volumeSizeBytes }, { withMappings: true });
  let reader: VolumeReader | undefined;
  try {
    reader = await openSourceReader(p);
    const src = await volumeDigest((b, o) => reader!.read(b, o), pool.volumeSizeBytes);
    const dst = await volumeDigest((b, o) => target.readAt(b, o), pool.volumeSizeBytes);
    if (src !== dst) throw new ThinshipError('CHECKSUM_MISMATCH', `demo: target differs from device ${devId} of the pool (sha256 ${dst} vs ${src})`);
    return src;
  } finally {
    await reader?.close();
    await p.close();
  }
}

export async function demoCommand(flags: { dir?: string }): Promise<void> {
  const dir = flags.dir ?? await mkdtemp(join(tmpdir(), 'thinship-demo-'));
  try {
    out(`thinship demo: building an offline thin pool in ${dir}`);
    const pool = await createDemoPool(dir);
    out(`  pool: ${pool.metadataPath} (metadata), ${pool.dataPath} (data), block ${formatBytes(pool.blockBytes)}, volume ${formatBytes(pool.volumeSizeBytes)}, snapshots: device ${pool.baseDevId} (older) and ${pool.snapDevId}`);
    const targetPath = join(dir, 'target.img');
    const target = await openVolume(targetPath, { mode: 'write', create: true });
    try {
      await target.extendTo(pool.volumeSizeBytes);
      const offline = { kind: 'offline' as const, metadataPath: pool.metadataPath, dataPath: pool.dataPath, volumeSizeBytes: pool.volumeSizeBytes };
      const t0 = performance.now();
      out(`1. full send of device ${pool.baseDevId} into ${targetPath}`);
      const full = await sendInto({ ...offline, snapDevId: pool.baseDevId }, target);
      out(`  applied ${full.summary.dataRecords} data records (${formatBytes(full.summary.bytesWritten)}), stream ${formatBytes(full.streamBytes)}, ${formatRate(full.summary.bytesWritten, full.summary.seconds)}`);
      out(`  verified: target == device ${pool.baseDevId} (sha256 ${(await verify(pool, pool.baseDevId, target)).slice(0, 16)}…)`);
      out(`2. incremental send ${pool.baseDevId} -> ${pool.snapDevId} into the same target`);
      const inc = await sendInto({ ...offline, snapDevId: pool.snapDevId, baseDevId: pool.baseDevId }, target);
      out(`  applied ${inc.summary.dataRecords} data records (${formatBytes(inc.summary.bytesWritten)}) and ${inc.summary.unmapRecords} unmaps (${formatBytes(inc.summary.bytesDiscarded)}), stream ${formatBytes(inc.streamBytes)}`);
      out(`  verified: target == device ${pool.snapDevId} (sha256 ${(await verify(pool, pool.snapDevId, target)).slice(0, 16)}…)`);
      out(`done in ${((performance.now() - t0) / 1000).toFixed(2)} s: the incremental moved ${formatBytes(inc.summary.bytesWritten)} instead of ${formatBytes(full.summary.bytesWritten)}`);
    } finally {
      await target.close();
    }
  } finally {
    if (!flags.dir) await rm(dir, { recursive: true, force: true });
  }
}
