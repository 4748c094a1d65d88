/**
 * LINBIT stream encoder: messages (StreamMessages, or LinbitMessages that name
 * the format) -> Buffers of the byte format
 * (format.ts). Header buffers are batched; big DATA payloads are yielded as
 * they are, without copying. With checksums, DATA records are held until their
 * checksum group (<= 32 MiB) is written before them; the checksums, the digest
 * and the counts come from the integrity core (stream/integrity.ts).
 */
import { ThinshipError, type ErrorCode } from '../../errors.js';
import type { BeginInfo, ChecksumAlgorithm, DataMessage } from '../messages.js';
import {
  BEGIN_INFO_KEYS,
  BEGIN_INFO_MAX_BYTES,
  BEGIN_INFO_VERSION_GROUPS,
  BEGIN_INFO_VERSION_RECORDS,
  CHECKSUM_ALGO_BYTE,
  CHECKSUM_ALGO_SHA256,
  DIGEST_RECORD_BYTES,
  CMD_BEGIN_STREAM,
  CMD_DATA,
  CMD_END_STREAM,
  CMD_OPT_BEGIN_INFO,
  CMD_OPT_DATA_CHECKSUM_GROUP,
  CMD_OPT_STREAM_DIGEST,
  CMD_UNMAP,
  END_PAYLOAD_BYTES,
  GROUP_ENTRY_BYTES,
  GROUP_ENCODER_DATA_BYTES,
  GROUP_MAX_RECORDS,
  GROUP_PREFETCH_BYTES,
  HEADER_BYTES,
  MAGIC_BYTES,
  TWO_POW_32,
  toAsyncIterator,
  type FormatVersion,
  type LinbitMessage,
} from './format.js';
import { StreamLedger, withDataChecksum, dataChecksum, isChecksumAlgorithm, recordChecksumOf, CHECKSUM_BYTES, type RecordChecksum } from '../integrity.js';

const MESSAGE_OVERHEAD_BYTES = 64;
/** UNMAPs the encoder holds between the DATA records of an open group before it closes the group early. */
const GROUP_MAX_HELD_UNMAPS = 4096;

export interface EncodeOptions {
  /** Format to write; default: the begin message's formatVersion. If given, the two must agree. */
  format?: FormatVersion;
  /**
   * Write thinship's optional records (begin-info, per-DATA checksums, stream
   * digest). Default: true for 1.1. Format 1.0 cannot carry them (it has only
   * DATA and UNMAP), so extensions with 1.0 are refused.
   */
  extensions?: boolean;
}

/** Payloads below this are copied into the small-record buffer; larger ones are yielded as they are. */
const INLINE_PAYLOAD_MAX_BYTES = 4096;
/** Small records are batched into buffers of about this size before being yielded. */
const SMALL_FLUSH_BYTES = 32 * 1024;
const SMALL_POOL_BYTES = 64 * 1024;

function messageWeight(m: LinbitMessage): number {
  return MESSAGE_OVERHEAD_BYTES + (m.type === 'data' && m.data instanceof Uint8Array ? m.data.length : 0);
}

/**
 * Pulls items from `source` and maps them in the background while the consumer
 * is busy, holding at most `maxWeight` of them (plus the one being pulled; always
 * at least one, so a maxWeight below one item cannot stall the consumer). Items
 * and a source (or map) error arrive in order; stopping early stops the pump and
 * closes the source.
 */
async function* readAhead<T>(source: AsyncIterable<T>, map: (item: T) => T, weigh: (item: T) => number, maxWeight: number): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  const queue: T[] = [];
  let weight = 0;
  let finished = false;
  let failed: { error: unknown } | undefined;
  let stopped = false;
  let wakeConsumer: (() => void) | undefined;
  let wakePump: (() => void) | undefined;
  const pump = (async () => {
    try {
      while (!stopped) {
        if (weight >= maxWeight && queue.length > 0) {
          await new Promise<void>((resolve) => {
            wakePump = resolve;
          });
          continue;
        }
        const r = await it.next();
        if (r.done) break;
        const item = map(r.value);
        queue.push(item);
        weight += weigh(item);
        wakeConsumer?.();
      }
    } catch (e) {
      failed = { error: e };
    } finally {
      finished = true;
      wakeConsumer?.();
    }
  })();
  try {
    for (;;) {
      const item = queue.shift();
      if (item !== undefined) {
        weight -= weigh(item);
        wakePump?.();
        yield item;
        continue;
      }
      if (failed !== undefined) throw failed.error;
      if (finished) return;
      await new Promise<void>((resolve) => {
        wakeConsumer = resolve;
      });
      wakeConsumer = undefined;
    }
  } finally {
    stopped = true;
    wakePump?.();
    await pump;
    await it.return?.();
  }
}

interface HeldData {
  kind: 'data';
  offset: number;
  data: Buffer;
  sum: Buffer;
}
type HeldRecord = HeldData | { kind: 'unmap'; offset: number; length: number };

/** Accumulates headers and small records in one pooled buffer, so a stream of tiny records is not one write per 28 bytes. */
class SmallWriter {
  private buf = Buffer.allocUnsafe(SMALL_POOL_BYTES);
  private start = 0;
  private end = 0;

  get pendingBytes(): number {
    return this.end - this.start;
  }

  private ensure(n: number): void {
    if (this.buf.length - this.end >= n) return;
    // Yielded parts of the old buffer stay untouched: start a new one, carry the pending bytes over.
    const pending = this.buf.subarray(this.start, this.end);
    const next = Buffer.allocUnsafe(Math.max(SMALL_POOL_BYTES, pending.length + n));
    pending.copy(next, 0);
    this.buf = next;
    this.start = 0;
    this.end = pending.length;
  }

  header(magic: Buffer, offset: number, length: number, cmd: number): void {
    this.ensure(HEADER_BYTES);
    const b = this.buf;
    const at = this.end;
    magic.copy(b, at);
    b.writeUInt32BE(Math.floor(offset / TWO_POW_32), at + 8);
    b.writeUInt32BE(offset >>> 0, at + 12);
    b.writeUInt32BE(Math.floor(length / TWO_POW_32), at + 16);
    b.writeUInt32BE(length >>> 0, at + 20);
    b.writeUInt32BE(cmd >>> 0, at + 24);
    this.end += HEADER_BYTES;
  }

  u64(value: number): void {
    this.ensure(8);
    this.buf.writeUInt32BE(Math.floor(value / TWO_POW_32), this.end);
    this.buf.writeUInt32BE(value >>> 0, this.end + 4);
    this.end += 8;
  }

  u8(value: number): void {
    this.ensure(1);
    this.buf[this.end++] = value;
  }

  bytes(src: Uint8Array): void {
    this.ensure(src.length);
    this.buf.set(src, this.end);
    this.end += src.length;
  }

  /** The pending bytes as one Buffer (a view that is never written again), or undefined. */
  take(): Buffer | undefined {
    if (this.end === this.start) return undefined;
    const out = this.buf.subarray(this.start, this.end);
    this.start = this.end;
    return out;
  }
}

function encodeError(index: number, type: string, what: string, code: ErrorCode = 'BAD_STREAM'): ThinshipError {
  return new ThinshipError(code, `cannot encode message ${index} (${type}): ${what}`, { details: { messageIndex: index } });
}

function checkUint(index: number, type: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw encodeError(index, type, `${name} must be a non-negative safe integer, got ${String(value)}`);
  }
  return value;
}

/** The begin-info payload: JSON of the begin's fields (the format version is not one: the magic says it), with "v": 2 with checksums (groups), else 1. */
function encodeBeginInfo(info: BeginInfo, checksum: ChecksumAlgorithm): Buffer {
  const obj: Record<string, unknown> = { v: checksum !== 'none' ? BEGIN_INFO_VERSION_GROUPS : BEGIN_INFO_VERSION_RECORDS };
  for (const k of BEGIN_INFO_KEYS) {
    const v = k === 'checksum' ? checksum : info[k];
    if (v !== undefined) obj[k] = v;
  }
  const out = Buffer.from(JSON.stringify(obj), 'utf8');
  if (out.length > BEGIN_INFO_MAX_BYTES) {
    throw new ThinshipError('BAD_STREAM', `begin-info is ${out.length} bytes, more than the ${BEGIN_INFO_MAX_BYTES} allowed`);
  }
  return out;
}

/**
 * Encodes messages into a LINBIT stream. Yields Buffers that the caller writes
 * in order; big DATA payloads are the caller's own Buffers, passed through.
 * Throws (synchronously) USAGE for format 1.0 with extensions; while iterating,
 * BAD_STREAM for a message sequence that breaks the order begin (data|unmap)* end.
 */
export function encodeStream(messages: AsyncIterable<LinbitMessage> | Iterable<LinbitMessage>, opts: EncodeOptions = {}): AsyncIterable<Buffer> {
  if (opts.format === '1.0' && opts.extensions === true) {
    throw new ThinshipError('USAGE', 'format 1.0 has only DATA and UNMAP records: it cannot carry extensions (begin-info, checksums, digest)');
  }
  return encodeGen(messages, opts);
}

async function* encodeGen(messages: AsyncIterable<LinbitMessage> | Iterable<LinbitMessage>, opts: EncodeOptions): AsyncGenerator<Buffer> {
  const out = new SmallWriter();
  let index = 0;
  // Set by handle(); the casts keep TypeScript from narrowing them to their initial values here.
  let state = 'start' as 'start' | 'body' | 'done';
  let format: FormatVersion = '1.1';
  let magic = MAGIC_BYTES['1.1'];
  /** The per-DATA checksum (extensions on and a begin with checksums), else undefined. */
  let checksums: RecordChecksum | undefined;
  /** Counts and the stream digest, in message order (= stream order: held records keep their order). */
  let ledger = new StreamLedger(false);
  /** LINBIT's n_chunks: every record written, BEGIN, END and optional records included. */
  let records = 0;
  /** Records waiting for their checksum group (checksums on): DATA with payload, and the UNMAPs between them. */
  let held: HeldRecord[] = [];
  let heldData = 0;
  let heldDataBytes = 0;
  /** A DATA record being written in pieces (checksums off): where the next piece must start, and how much is left. */
  let piece: { next: number; remaining: number } | undefined;

  function* writeData(offset: number, data: Buffer): Generator<Buffer> {
    out.header(magic, offset, data.length, CMD_DATA);
    if (data.length < INLINE_PAYLOAD_MAX_BYTES) {
      out.bytes(data);
    } else {
      const pending = out.take();
      if (pending !== undefined) yield pending;
      yield data;
    }
    records++;
  }

  function writeUnmap(offset: number, length: number): void {
    out.header(magic, offset, length, CMD_UNMAP);
    records++;
  }

  /** The checksum group for the held DATA records, then the held records themselves, in their order. */
  function* flushGroup(): Generator<Buffer> {
    if (held.length === 0) return;
    const first = held.find((h) => h.kind === 'data') as HeldData;
    out.header(magic, first.offset, 1 + heldData * GROUP_ENTRY_BYTES, CMD_OPT_DATA_CHECKSUM_GROUP);
    out.u8(CHECKSUM_ALGO_BYTE[checksums!]);
    for (const h of held) {
      if (h.kind !== 'data') continue;
      out.u64(h.offset);
      out.u64(h.data.length);
      out.bytes(h.sum);
    }
    records++;
    for (const h of held) {
      if (h.kind === 'data') {
        yield* writeData(h.offset, h.data);
      } else {
        writeUnmap(h.offset, h.length);
      }
      if (out.pendingBytes >= SMALL_FLUSH_BYTES) yield out.take()!;
    }
    held = [];
    heldData = 0;
    heldDataBytes = 0;
  }

  /** Encodes one message; yields the Buffers that are ready. */
  function* handle(m: LinbitMessage): Generator<Buffer> {
    index++;
    if (state === 'done') throw encodeError(index, m.type, 'message after end');
    if (state === 'start' && m.type !== 'begin') throw encodeError(index, m.type, 'the first message must be begin');
    if (piece !== undefined && m.type !== 'data')
      throw encodeError(index, m.type, `the DATA record being written in pieces still needs ${piece.remaining} bytes at ${piece.next}`);

    switch (m.type) {
      case 'begin': {
        if (state !== 'start') throw encodeError(index, m.type, 'a second begin');
        const infoFormat = m.info.formatVersion ?? opts.format ?? '1.1';
        if (infoFormat !== '1.0' && infoFormat !== '1.1') throw encodeError(index, m.type, `unknown formatVersion ${String(infoFormat)}`);
        if (opts.format !== undefined && opts.format !== infoFormat) {
          throw encodeError(index, m.type, `begin says format ${infoFormat} but the encoder was asked for ${opts.format}`);
        }
        format = infoFormat;
        magic = MAGIC_BYTES[format];
        const extensions = opts.extensions ?? format === '1.1';
        if (format === '1.0' && extensions) {
          throw new ThinshipError('USAGE', 'format 1.0 has only DATA and UNMAP records: it cannot carry extensions (begin-info, checksums, digest)');
        }
        if (format === '1.1') {
          out.header(magic, 0, 0, CMD_BEGIN_STREAM);
          records++;
        }
        if (extensions) {
          const algo: ChecksumAlgorithm = m.info.checksum ?? 'sha256';
          if (!isChecksumAlgorithm(algo)) throw encodeError(index, m.type, `unknown checksum ${String(algo)}`);
          const payload = encodeBeginInfo(m.info, algo);
          out.header(magic, 0, payload.length, CMD_OPT_BEGIN_INFO);
          out.bytes(payload);
          records++;
          checksums = recordChecksumOf(m.info);
          ledger = new StreamLedger(checksums !== undefined);
        }
        state = 'body';
        break;
      }
      case 'data': {
        const offset = checkUint(index, m.type, 'offsetBytes', m.offsetBytes);
        if (!(m.data instanceof Uint8Array)) throw encodeError(index, m.type, 'data must be a Buffer');
        const length = m.data.length;
        if (!Number.isSafeInteger(offset + length)) throw encodeError(index, m.type, `offsetBytes + length ${offset} + ${length} exceeds 2^53`);
        if (m.piece !== undefined || piece !== undefined) {
          yield* encodePiece(m, index);
          break;
        }
        if (!checksums) {
          ledger.addData(offset, length);
          yield* writeData(offset, m.data);
          break;
        }
        let sum = m.checksum;
        if (sum !== undefined && sum.length !== CHECKSUM_BYTES) throw encodeError(index, m.type, `checksum must be ${CHECKSUM_BYTES} bytes, got ${sum.length}`);
        sum ??= dataChecksum(m.data, checksums); // normally done by readAhead's withDataChecksum already
        ledger.addData(offset, length, sum);
        // A group covers at most GROUP_ENCODER_DATA_BYTES (unless one record alone is bigger) and GROUP_MAX_RECORDS DATA records.
        if (heldData > 0 && heldDataBytes + length > GROUP_ENCODER_DATA_BYTES) yield* flushGroup();
        held.push({ kind: 'data', offset, data: m.data, sum });
        heldData++;
        heldDataBytes += length;
        if (heldData >= GROUP_MAX_RECORDS || heldDataBytes >= GROUP_ENCODER_DATA_BYTES) yield* flushGroup();
        break;
      }
      case 'unmap': {
        const offset = checkUint(index, m.type, 'offsetBytes', m.offsetBytes);
        const length = checkUint(index, m.type, 'lengthBytes', m.lengthBytes);
        if (!Number.isSafeInteger(offset + length)) throw encodeError(index, m.type, `offsetBytes + lengthBytes ${offset} + ${length} exceeds 2^53`);
        ledger.addUnmap(offset, length);
        if (heldData === 0) {
          writeUnmap(offset, length);
        } else {
          // Keeps the stream order (the digest covers it); the count of held records is bounded too.
          held.push({ kind: 'unmap', offset, length });
          if (held.length - heldData >= GROUP_MAX_HELD_UNMAPS) yield* flushGroup();
        }
        break;
      }
      case 'end': {
        const sent = ledger.counts;
        if (ledger.endCountMismatch({ dataRecords: m.dataRecords, unmapRecords: m.unmapRecords }) !== undefined) {
          throw encodeError(
            index,
            m.type,
            `end counts data ${m.dataRecords} / unmap ${m.unmapRecords}, but ${sent.dataRecords} / ${sent.unmapRecords} were sent`,
          );
        }
        yield* flushGroup();
        if (ledger.checksums) {
          if (m.digest !== undefined && !ledger.digestMatches(m.digest)) {
            throw encodeError(
              index,
              m.type,
              `end.digest ${m.digest.toString('hex')} differs from the computed stream digest ${ledger.digest.toString('hex')}`,
              'CHECKSUM_MISMATCH',
            );
          }
          out.header(magic, 0, DIGEST_RECORD_BYTES, CMD_OPT_STREAM_DIGEST);
          out.u8(CHECKSUM_ALGO_SHA256); // the chain is sha256 whatever the per-DATA checksum
          out.bytes(ledger.digest);
          records++;
        }
        if (format === '1.1') {
          records++; // END counts itself
          out.header(magic, 0, END_PAYLOAD_BYTES, CMD_END_STREAM);
          out.u64(records);
          out.u64(sent.dataRecords);
          out.u64(sent.unmapRecords);
        }
        state = 'done';
        break;
      }
      default: {
        const t = (m as { type?: unknown }).type;
        throw encodeError(index, String(t), `unknown message type ${String(t)}`);
      }
    }
    if (state === 'done' || out.pendingBytes >= SMALL_FLUSH_BYTES) {
      const pending = out.take();
      if (pending !== undefined) yield pending;
    }
  }

  const it = toAsyncIterator(messages);
  try {
    const first = await it.next();
    if (!first.done) {
      yield* handle(first.value);
      // With checksums, a group's records are held until the group is complete; meanwhile the next group's
      // messages are pulled and hashed in the background (up to GROUP_PREFETCH_BYTES), so reading and
      // hashing overlap writing the previous group.
      const rest: AsyncIterable<LinbitMessage> = { [Symbol.asyncIterator]: () => it };
      const algo = checksums;
      for await (const m of algo ? readAhead(rest, (x) => withDataChecksum(x, algo), messageWeight, GROUP_PREFETCH_BYTES) : rest) yield* handle(m);
    }
  } finally {
    await it.return?.();
  }
  if (state !== 'done') throw encodeError(index + 1, 'none', 'the messages ended without an end message');

  /** A piece of a DATA record (as the decoder delivers big records): one header for the record, then each piece's bytes. */
  function* encodePiece(m: DataMessage, i: number): Generator<Buffer> {
    const p = m.piece;
    if (p === undefined) throw encodeError(i, m.type, `the DATA record being written in pieces still needs ${piece!.remaining} bytes at ${piece!.next}`);
    if (checksums) throw encodeError(i, m.type, 'a DATA record in pieces cannot be covered by a checksum group written before it; encode it without checksums');
    if (piece === undefined) {
      const recOffset = checkUint(i, m.type, 'piece.recordOffsetBytes', p.recordOffsetBytes);
      const recLength = checkUint(i, m.type, 'piece.recordLengthBytes', p.recordLengthBytes);
      if (m.offsetBytes !== recOffset || !Number.isSafeInteger(recOffset + recLength))
        throw encodeError(i, m.type, `the first piece must start at the record's offset ${recOffset}, got ${m.offsetBytes}`);
      out.header(magic, recOffset, recLength, CMD_DATA);
      records++;
      ledger.addData(recOffset, recLength);
      piece = { next: recOffset, remaining: recLength };
    }
    if (m.offsetBytes !== piece.next || m.data.length > piece.remaining) {
      throw encodeError(
        i,
        m.type,
        `piece at ${m.offsetBytes} of ${m.data.length} bytes does not continue the record (next ${piece.next}, ${piece.remaining} bytes left)`,
      );
    }
    piece.next += m.data.length;
    piece.remaining -= m.data.length;
    if (p.last !== (piece.remaining === 0))
      throw encodeError(i, m.type, `piece marked ${p.last ? 'last' : 'not last'} with ${piece.remaining} bytes of the record left`);
    const pending = out.take();
    if (pending !== undefined) yield pending;
    if (m.data.length > 0) yield m.data;
    if (p.last) piece = undefined;
  }
}
