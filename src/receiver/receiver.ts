/**
 * The transport-neutral receiver: applies an async iterable of messages to a
 * target volume. Every message is checked against the target before it touches
 * it (order, offsets and lengths inside the volume); unmapped ranges are made
 * to read back as zeros whatever the target's block size (device layer:
 * discard the aligned middle, zero the edges; punch holes in files).
 * On any error the target is flushed and the error says how much was applied.
 */
import { ThinshipError, asThinshipError } from '../errors.js';
import type { VolumeHandle } from '../device/volume.js';
import type { StreamMessage, BeginInfo } from '../stream/messages.js';
import { AscendingRecords, rangeFault } from '../stream/integrity.js';

export interface ApplySummary {
  begin: BeginInfo;
  records: number;
  dataRecords: number;
  unmapRecords: number;
  bytesWritten: number;
  bytesDiscarded: number;
  /** Full streams: bytes between records (unmapped in the source) made to read as zeros. */
  gapBytesZeroed: number;
  seconds: number;
  /** The end record's stream digest, when the stream carried one (and it matched). */
  digest?: Buffer;
}

export interface ApplyOptions {
  /** Called after each record with the running totals (progress display). */
  onProgress?: (s: Omit<ApplySummary, 'begin' | 'seconds'>) => void;
  /**
   * Called once with the begin message before anything is written and before
   * the size check: the place to check identity or size a new file target.
   */
  onBegin?: (info: BeginInfo) => Promise<void>;
  /** A resumed transfer: everything below this offset is already applied. */
  resumeFromBytes?: number;
  /** The target is a staging file or behind an undo journal (target-state/): a failure is rolled back by the caller, so say so. */
  staged?: boolean;
}

function where(m: { offsetBytes: number }, record: number, extra?: { streamPosition?: number }): string {
  const pos = extra?.streamPosition !== undefined ? `stream byte ${extra.streamPosition}, ` : '';
  return `${pos}record ${record}, volume offset ${m.offsetBytes}`;
}

export async function applyMessages(messages: AsyncIterable<StreamMessage>, target: VolumeHandle, o: ApplyOptions = {}): Promise<ApplySummary> {
  const t0 = performance.now();
  const s = { records: 0, dataRecords: 0, unmapRecords: 0, bytesWritten: 0, bytesDiscarded: 0, gapBytesZeroed: 0 };
  /**
   * A full stream (begin-info says so, with a volume size) replaces the whole
   * target: what the source has unmapped must read as zeros too. Records come
   * in increasing offset order, so the gaps between them are zeroed as we go
   * (cheap discards on thin LVs and holes in files), and the tail at the end.
   * A plain LINBIT stream says neither, and is applied as thin_recv does.
   */
  let order: AscendingRecords | undefined;
  const zeroGapTo = async (end: number) => {
    if (order === undefined || end <= order.endBytes) return;
    await target.makeZero(order.endBytes, end - order.endBytes);
    s.gapBytesZeroed += end - order.endBytes;
    order.endBytes = end;
  };
  let begin: BeginInfo | undefined;
  let ended = false;
  let digest: Buffer | undefined;
  /** A DATA record arriving in pieces (docs/stream-format.md): where its next piece must start, and its end. */
  let inRecord: { next: number; end: number } | undefined;
  try {
    for await (const m of messages) {
      if (inRecord !== undefined) {
        // The rest of a DATA record whose whole range was checked at its first piece.
        const p = m.type === 'data' ? m.piece : undefined;
        if (
          m.type !== 'data' ||
          p === undefined ||
          m.offsetBytes !== inRecord.next ||
          m.offsetBytes + m.data.length > inRecord.end ||
          p.last !== (m.offsetBytes + m.data.length === inRecord.end)
        ) {
          throw new ThinshipError(
            'BAD_STREAM',
            `record ${s.records}: a piece of the DATA record ending at ${inRecord.end} was expected at volume offset ${inRecord.next}, got ${m.type}${m.type === 'data' ? ` at ${m.offsetBytes} (${m.data.length} bytes)` : ''}`,
          );
        }
        await target.writeAt(m.data, m.offsetBytes);
        s.bytesWritten += m.data.length;
        inRecord = p.last ? undefined : { next: m.offsetBytes + m.data.length, end: inRecord.end };
        o.onProgress?.(s);
        continue;
      }
      s.records++;
      if (ended) throw new ThinshipError('BAD_STREAM', `record ${s.records} (${m.type}) follows the end of the stream`);
      if (m.type === 'begin') {
        if (begin) throw new ThinshipError('BAD_STREAM', `record ${s.records}: a second begin`);
        begin = m.info;
        await o.onBegin?.(begin);
        if (begin.volumeSizeBytes !== undefined && begin.volumeSizeBytes > target.sizeBytes) {
          throw new ThinshipError(
            'TARGET_TOO_SMALL',
            `the stream is for a volume of ${begin.volumeSizeBytes} bytes but target ${target.path} has only ${target.sizeBytes} bytes; nothing was written`,
          );
        }
        if (begin.incremental === false && begin.volumeSizeBytes !== undefined) order = new AscendingRecords(o.resumeFromBytes ?? 0);
        continue;
      }
      if (!begin) throw new ThinshipError('BAD_STREAM', `record ${s.records} (${m.type}) comes before the begin of the stream`);
      if (m.type === 'end') {
        ended = true;
        digest = m.digest;
        await zeroGapTo(begin.volumeSizeBytes ?? 0);
        continue;
      }
      // A record in pieces is checked as a whole at its first piece: nothing of it is written if it does not fit.
      const piece = m.type === 'data' ? m.piece : undefined;
      const pieceBytes = m.type === 'data' ? m.data.length : 0;
      if (
        piece !== undefined &&
        (m.offsetBytes !== piece.recordOffsetBytes || pieceBytes > piece.recordLengthBytes || piece.last !== (pieceBytes === piece.recordLengthBytes))
      ) {
        throw new ThinshipError(
          'BAD_STREAM',
          `record ${s.records}: the first piece of a DATA record [${piece.recordOffsetBytes}, +${piece.recordLengthBytes}) must start at its offset and be marked last only if it is the whole record; got ${pieceBytes} bytes at ${m.offsetBytes}${piece.last ? ', marked last' : ''}`,
        );
      }
      const length = piece !== undefined ? piece.recordLengthBytes : m.type === 'data' ? m.data.length : m.lengthBytes;
      const pos = m as { streamPosition?: number };
      if (rangeFault(m.offsetBytes, length, target.sizeBytes) !== undefined) {
        throw new ThinshipError(
          'BAD_STREAM',
          `${m.type} record beyond the target (${where(m, s.records, pos)}, length ${length}): target ${target.path} is ${target.sizeBytes} bytes`,
          { details: { volumeOffset: m.offsetBytes, record: s.records, streamPosition: pos.streamPosition } },
        );
      }
      if (order !== undefined) {
        if (!order.accepts(m.offsetBytes)) {
          throw new ThinshipError(
            'BAD_STREAM',
            `${m.type} record out of order in a full stream (${where(m, s.records, pos)}): records must come in increasing offset order, and this one starts below ${order.endBytes}`,
            { details: { volumeOffset: m.offsetBytes, record: s.records, streamPosition: pos.streamPosition } },
          );
        }
        await zeroGapTo(m.offsetBytes);
        order.advance(m.offsetBytes, length);
      }
      if (m.type === 'data') {
        await target.writeAt(m.data, m.offsetBytes);
        s.dataRecords++;
        s.bytesWritten += m.data.length;
        if (piece !== undefined && !piece.last) inRecord = { next: m.offsetBytes + m.data.length, end: m.offsetBytes + length };
      } else {
        await target.makeZero(m.offsetBytes, m.lengthBytes);
        s.unmapRecords++;
        s.bytesDiscarded += length;
      }
      o.onProgress?.(s);
    }
    if (!begin) throw new ThinshipError('BAD_STREAM', 'empty stream: no records at all (nothing was written)');
    if (!ended || inRecord !== undefined) throw new ThinshipError('BAD_STREAM', `the stream ended without its end record after ${s.records} records`);
    await target.flush();
    return { begin, ...s, seconds: (performance.now() - t0) / 1000, digest };
  } catch (e) {
    const err = asThinshipError(e);
    await target.flush().catch(() => undefined);
    const applied = s.dataRecords + s.unmapRecords;
    const appliedNote = `applied before the error: ${s.dataRecords} data records (${s.bytesWritten} bytes written) and ${s.unmapRecords} unmap records (${s.bytesDiscarded} bytes discarded)`;
    const note =
      applied === 0
        ? 'nothing was applied to the target'
        : o.staged
          ? `${appliedNote}, to a staging file or behind an undo journal: rolled back, the target holds what it held before`
          : `${appliedNote}; target flushed. The target is partly updated: send again to complete it`;
    throw new ThinshipError(err.code, `${err.message}; ${note}`, { retryable: err.retryable, details: { ...err.details, applied: s }, cause: err });
  }
}
