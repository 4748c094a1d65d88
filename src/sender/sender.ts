/**
 * The transport-neutral sender: a plan and a volume reader become an async
 * iterable of messages (begin, data, unmap, end). The byte pipe and gRPC are
 * adapters over this. Reads run ahead of the consumer by a bounded number of
 * operations, so the device and the transport overlap.
 */
import type { SendPlan } from '../thin/planner.js';
import type { PlanOp } from '../thin/model.js';
import type { StreamMessage, BeginInfo, ChecksumAlgorithm } from '../stream/messages.js';
import { DEFAULT_CHECKSUM } from '../stream/integrity.js';
import type { VolumeReader } from './volume-reader.js';
import type { ReadBuffers } from './chunk-buffers.js';

/** Reads in flight ahead of the consumer; with 1 MiB ops this bounds read-ahead memory to ~8 MiB. */
export const READ_AHEAD_OPS = 8;

export interface SenderOptions {
  transferId?: string;
  checksum?: ChecksumAlgorithm;
  /** Start at this volume offset (resume): ops wholly below it are skipped, one straddling it is cut. */
  resumeFromBytes?: number;
  onProgress?: (p: { dataBytes: number; unmapBytes: number }) => void;
  /**
   * The source and base ids the begin names (default: the LV uuids). gRPC
   * sends its own (rpc/client.ts wireVolumeIds: offline pools by path).
   */
  volumeIds?: { sourceId: string; baseId?: string };
  /** Read into recycled buffers; the consumer gives each DATA buffer back when done with it. Default: a fresh buffer per op. */
  buffers?: ReadBuffers;
}

function beginInfoOf(p: SendPlan, o: SenderOptions): BeginInfo {
  return {
    volumeSizeBytes: p.plan.totals.volumeSizeBytes,
    blockSizeBytes: p.plan.totals.blockSizeBytes,
    sourceId: o.volumeIds?.sourceId ?? p.source.uuid,
    // LVM sources only: the receiver names its received snapshot after it (offline pools have no name worth keeping).
    sourceName: p.lvm ? `${p.lvm.snap.vg}/${p.lvm.snap.lv}` : undefined,
    baseId: o.volumeIds ? o.volumeIds.baseId || undefined : p.base?.uuid,
    incremental: p.mode === 'incremental',
    transferId: o.transferId,
    checksum: o.checksum ?? DEFAULT_CHECKSUM,
    plannedDataBytes: p.plan.totals.dataBytes,
    plannedUnmapBytes: p.plan.totals.unmapBytes,
  };
}

async function* opsFrom(p: SendPlan, resumeFromBytes: number): AsyncGenerator<PlanOp> {
  for await (const batch of p.plan.batches()) {
    for (const op of batch) {
      const end = op.offsetBytes + op.lengthBytes;
      if (end <= resumeFromBytes) continue;
      if (op.offsetBytes < resumeFromBytes) yield { ...op, offsetBytes: resumeFromBytes, lengthBytes: end - resumeFromBytes };
      else yield op;
    }
  }
}

export async function* sendMessages(p: SendPlan, reader: VolumeReader, o: SenderOptions = {}): AsyncGenerator<StreamMessage> {
  yield { type: 'begin', info: beginInfoOf(p, o) };
  let dataRecords = 0;
  let unmapRecords = 0;
  let dataBytes = 0;
  let unmapBytes = 0;
  type Pending = { op: PlanOp; data?: Promise<Buffer> };
  const queue: Pending[] = [];
  const ops = opsFrom(p, o.resumeFromBytes ?? 0);
  let exhausted = false;
  const read = async (op: PlanOp) => {
    // Handed downstream and may be held (e.g. by a gRPC write): fresh, or recycled by a consumer that says when it is done.
    const buf = o.buffers ? o.buffers.take(op.lengthBytes) : Buffer.allocUnsafe(op.lengthBytes);
    await reader.read(buf, op.offsetBytes);
    return buf;
  };
  const fill = async () => {
    while (!exhausted && queue.length < READ_AHEAD_OPS) {
      const n = await ops.next();
      if (n.done) {
        exhausted = true;
        break;
      }
      const data = n.value.kind === 'data' ? read(n.value) : undefined;
      data?.catch(() => undefined); // awaited in order below
      queue.push({ op: n.value, data });
    }
  };
  try {
    await fill();
    while (queue.length > 0) {
      const { op, data } = queue.shift()!;
      if (op.kind === 'data') {
        const buf = await data!;
        await fill();
        yield { type: 'data', offsetBytes: op.offsetBytes, data: buf };
        dataRecords++;
        dataBytes += op.lengthBytes;
      } else {
        await fill();
        yield { type: 'unmap', offsetBytes: op.offsetBytes, lengthBytes: op.lengthBytes };
        unmapRecords++;
        unmapBytes += op.lengthBytes;
      }
      o.onProgress?.({ dataBytes, unmapBytes });
    }
  } finally {
    await ops.return(undefined);
  }
  // The LINBIT encoder checks these counts against what it wrote; over gRPC the ledger's end is sent.
  yield { type: 'end', dataRecords, unmapRecords, dataBytes, unmapBytes };
}
