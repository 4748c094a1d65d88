/**
 * LINBIT stream decoder: Buffers (any chunking) -> messages (LinbitMessage:
 * the transport-neutral StreamMessages plus the format's own fields), checking
 * the byte format (format.ts) as it reads; holds at most one record of <= 4 MiB
 * (longer ones are delivered in 4 MiB pieces). Checksums, the digest and the
 * End's counts are checked by the integrity core (stream/integrity.ts); this
 * file says where (details.streamPosition, record, field). Errors are
 * ThinshipError BAD_STREAM or CHECKSUM_MISMATCH.
 */
import type { Readable } from 'node:stream';
import { ThinshipError, type ErrorCode } from '../../errors.js';
import type { DataMessage } from '../messages.js';
import {
  BEGIN_INFO_MAX_BYTES,
  BEGIN_INFO_VERSION_GROUPS,
  BEGIN_INFO_VERSION_RECORDS,
  CHECKSUM_ALGO_BYTE,
  CHECKSUM_ALGO_SHA256,
  CHECKSUM_RECORD_BYTES,
  DIGEST_RECORD_BYTES,
  CMD_BEGIN_STREAM,
  CMD_DATA,
  CMD_END_STREAM,
  CMD_OPT_BEGIN_INFO,
  CMD_OPT_DATA_CHECKSUM,
  CMD_OPT_DATA_CHECKSUM_GROUP,
  CMD_OPT_STREAM_DIGEST,
  CMD_OPTIONAL_BIT,
  CMD_UNMAP,
  DATA_PIECE_BYTES,
  END_PAYLOAD_BYTES,
  GROUP_ENTRY_BYTES,
  GROUP_MAX_RECORDS,
  HEADER_BYTES,
  MAGIC_1_0,
  MAGIC_1_1,
  MAGIC_PREVIOUS,
  TWO_POW_32,
  cmdName,
  hex,
  toAsyncIterator,
  type FormatVersion,
  type LinbitBeginInfo,
  type LinbitEndMessage,
  type LinbitMessage,
} from './format.js';
import { StreamLedger, checkDataChecksum, runningChecksum, type RecordChecksum, type RunningChecksum } from '../integrity.js';

export interface DecodeOptions {
  /**
   * Largest DATA record accepted (refused from its header). Default: no limit
   * beyond 2^53 and the volume size in begin-info: LINBIT's thin_send writes one
   * DATA record per mapped run, of any length, and records stream in pieces.
   */
  maxDataBytes?: number;
  /** DATA records longer than this are delivered in pieces of this size. Default DATA_PIECE_BYTES (4 MiB). */
  pieceBytes?: number;
}

const EMPTY = Buffer.alloc(0);

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new ThinshipError('INTERNAL', `decodeStream needs binary chunks, got ${typeof chunk} (is an encoding set on the stream?)`);
}

/** Pulls exact byte counts out of an async iterator of chunks, tracking the absolute stream position. */
class ChunkReader {
  private chunk: Buffer = EMPTY;
  private pos = 0;
  /** Stream position of chunk[0]. */
  private base = 0;
  private eof = false;

  constructor(private readonly it: AsyncIterator<unknown>) {}

  get position(): number {
    return this.base + this.pos;
  }

  /** n bytes as a view of the current chunk, if it holds them; otherwise undefined (no await). */
  tryRead(n: number): Buffer | undefined {
    if (this.chunk.length - this.pos < n) return undefined;
    const b = this.chunk.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  private async nextChunk(): Promise<boolean> {
    while (!this.eof) {
      const r = await this.it.next();
      if (r.done) {
        this.eof = true;
        break;
      }
      const b = toBuffer(r.value);
      if (b.length === 0) continue;
      this.base += this.chunk.length;
      this.chunk = b;
      this.pos = 0;
      return true;
    }
    // Keep position() correct after EOF: fold the consumed chunk into base.
    this.base += this.pos;
    this.chunk = EMPTY;
    this.pos = 0;
    return false;
  }

  /**
   * Exactly n bytes, or fewer only at EOF. A view when one chunk holds them, a
   * copy when they span chunks (n must have been checked against limits first).
   */
  async read(n: number): Promise<Buffer> {
    const fast = this.tryRead(n);
    if (fast !== undefined) return fast;
    if (this.chunk.length === this.pos) {
      if (!(await this.nextChunk())) return EMPTY;
      const again = this.tryRead(n);
      if (again !== undefined) return again;
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    for (;;) {
      const take = Math.min(n - got, this.chunk.length - this.pos);
      this.chunk.copy(out, got, this.pos, this.pos + take);
      this.pos += take;
      got += take;
      if (got === n) return out;
      if (!(await this.nextChunk())) return out.subarray(0, got);
    }
  }

  /** Skips n bytes; returns how many were skipped (fewer only at EOF). */
  async skip(n: number): Promise<number> {
    let done = 0;
    for (;;) {
      const take = Math.min(n - done, this.chunk.length - this.pos);
      this.pos += take;
      done += take;
      if (done === n) return done;
      if (!(await this.nextChunk())) return done;
    }
  }

  async atEof(): Promise<boolean> {
    if (this.chunk.length > this.pos) return false;
    return !(await this.nextChunk());
  }

  async close(): Promise<void> {
    // Stops (and for a Readable, destroys) the input when we stop early.
    if (this.eof) return;
    this.eof = true;
    try {
      await this.it.return?.();
    } catch {
      // The decode error (or the consumer's early stop) matters more than a failing input close.
    }
  }
}

interface Header {
  /** Stream position of the header's first byte. */
  pos: number;
  /** 1-based record number in stream order. */
  record: number;
  raw: Buffer;
  /** As numbers: exact up to 2^53; bigger values are rejected where they matter. */
  offset: number;
  length: number;
  cmd: number;
}

interface Where {
  pos: number;
  record?: number;
  field: string;
  volumeOffset?: number;
}

function streamError(where: Where, what: string, code: ErrorCode = 'BAD_STREAM', extra: Record<string, unknown> = {}): ThinshipError {
  const ctx: string[] = [];
  if (where.record !== undefined) ctx.push(`record ${where.record}`);
  ctx.push(where.field);
  if (where.volumeOffset !== undefined) ctx.push(`volume offset ${where.volumeOffset}`);
  const prefix = code === 'CHECKSUM_MISMATCH' ? 'checksum mismatch' : 'bad stream';
  return new ThinshipError(code, `${prefix} at byte ${where.pos} (${ctx.join(', ')}): ${what}`, {
    details: { streamPosition: where.pos, record: where.record, field: where.field, volumeOffsetBytes: where.volumeOffset, ...extra },
  });
}

const MAGIC_1_1_HI = Number(MAGIC_1_1 >> 32n);
const MAGIC_1_1_LO = Number(MAGIC_1_1 & 0xffff_ffffn);
const MAGIC_1_0_HI = Number(MAGIC_1_0 >> 32n);
const MAGIC_1_0_LO = Number(MAGIC_1_0 & 0xffff_ffffn);
const MAGIC_PREV_HI = Number(MAGIC_PREVIOUS >> 32n);
const MAGIC_PREV_LO = Number(MAGIC_PREVIOUS & 0xffff_ffffn);

const MAX_SAFE_HI = Math.floor(Number.MAX_SAFE_INTEGER / TWO_POW_32);

const BEGIN_INFO_UINT_KEYS = ['volumeSizeBytes', 'blockSizeBytes', 'plannedDataBytes', 'plannedUnmapBytes'] as const;
const BEGIN_INFO_STRING_KEYS = ['sourceId', 'sourceName', 'baseId', 'transferId'] as const;

/** Parses and validates a begin-info payload into a begin (unknown keys are ignored: added compatibly within v1). */
function parseBeginInfo(payload: Buffer, formatVersion: FormatVersion, where: Where): { info: LinbitBeginInfo; version: number } {
  let obj: unknown;
  try {
    obj = JSON.parse(payload.toString('utf8'));
  } catch (e) {
    throw streamError(where, `begin-info is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw streamError(where, 'begin-info is not a JSON object');
  const o = obj as Record<string, unknown>;
  if (o.v !== BEGIN_INFO_VERSION_RECORDS && o.v !== BEGIN_INFO_VERSION_GROUPS) {
    throw streamError(
      where,
      `begin-info version ${JSON.stringify(o.v)} is not supported (expected ${BEGIN_INFO_VERSION_RECORDS} or ${BEGIN_INFO_VERSION_GROUPS})`,
    );
  }
  const info: LinbitBeginInfo = { formatVersion };
  for (const k of BEGIN_INFO_UINT_KEYS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      throw streamError(where, `begin-info ${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
    info[k] = v;
  }
  for (const k of BEGIN_INFO_STRING_KEYS) {
    const v = o[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || v.length > 4096) throw streamError(where, `begin-info ${k} must be a string of at most 4096 characters`);
    info[k] = v;
  }
  if (o.incremental !== undefined) {
    if (typeof o.incremental !== 'boolean') throw streamError(where, `begin-info incremental must be true or false, got ${JSON.stringify(o.incremental)}`);
    info.incremental = o.incremental;
  }
  if (o.checksum !== undefined) {
    if (o.checksum !== 'sha256' && o.checksum !== 'blake3' && o.checksum !== 'none')
      throw streamError(where, `begin-info checksum ${JSON.stringify(o.checksum)} is not supported (sha256, blake3 or none)`);
    info.checksum = o.checksum;
  }
  return { info, version: o.v };
}

/**
 * Decodes a LINBIT stream (1.0 or 1.1) into messages: begin (for 1.0 and for a
 * 1.1 stream without begin-info, just {formatVersion}), data/unmap in stream
 * order, end (only after END_STREAM's counts and the absence of trailing bytes
 * were checked; for 1.0, synthesized at EOF). Optional records of thinship are
 * checked; unknown optional records are skipped and counted.
 */
export function decodeStream(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Readable, opts: DecodeOptions = {}): AsyncIterable<LinbitMessage> {
  const maxDataBytes = opts.maxDataBytes ?? Number.MAX_SAFE_INTEGER;
  if (!Number.isSafeInteger(maxDataBytes) || maxDataBytes < 0) {
    throw new ThinshipError('USAGE', `maxDataBytes must be a non-negative integer, got ${maxDataBytes}`);
  }
  const pieceBytes = opts.pieceBytes ?? DATA_PIECE_BYTES;
  if (!Number.isSafeInteger(pieceBytes) || pieceBytes < 1) {
    throw new ThinshipError('USAGE', `pieceBytes must be a positive integer, got ${pieceBytes}`);
  }
  return new Decoder(toAsyncIterator(input), maxDataBytes, pieceBytes).run();
}

interface PendingData {
  msg: DataMessage;
  header: Header;
  payloadPos: number;
  /** For a record delivered in pieces (msg is its last piece): the running checksum of the whole payload, if it was kept. */
  hash?: RunningChecksum;
}

interface GroupEntry {
  offset: number;
  length: number;
  sum: Buffer;
}

interface OpenGroup {
  pos: number;
  record: number;
  /** The group's algorithm byte, as an algorithm (the begin-info's, when it declares one). */
  algorithm: RecordChecksum;
  entries: GroupEntry[];
  /** Index of the entry the next DATA record must match. */
  next: number;
}

class Decoder {
  private readonly r: ChunkReader;
  private format: FormatVersion = '1.1';
  private magicHi = 0;
  private magicLo = 0;
  private records = 0;
  /**
   * Counts and the stream digest (integrity core). With checksums declared, a DATA
   * record enters it once its checksum is verified (what the digest chains);
   * without, at its header.
   */
  private ledger = new StreamLedger(false);
  private skipped = 0;
  /**
   * begin-info declared checksums: 'records' (v1) = every DATA needs its checksum
   * record after it; 'groups' (v2) = every DATA is covered by a checksum group
   * before it. Either way END needs the digest record.
   */
  private checksumLayout: 'records' | 'groups' | undefined;
  /** The per-DATA checksum begin-info declared (sha256 or blake3), else undefined. */
  private algorithm: RecordChecksum | undefined;
  private volumeSizeBytes: number | undefined;
  private digestVerified: Buffer | undefined;
  private pending: PendingData | undefined;
  private group: OpenGroup | undefined;

  constructor(
    it: AsyncIterator<unknown>,
    private readonly maxDataBytes: number,
    private readonly pieceBytes: number,
  ) {
    this.r = new ChunkReader(it);
  }

  /** Next header, or undefined at a clean EOF (no byte of a next record). */
  private async readHeader(): Promise<Header | undefined> {
    const pos = this.r.position;
    const raw = this.r.tryRead(HEADER_BYTES) ?? (await this.r.read(HEADER_BYTES));
    if (raw.length === 0) return undefined;
    const record = this.records + 1;
    if (raw.length >= 8) this.checkMagic(raw, pos, record);
    if (raw.length < HEADER_BYTES) {
      throw streamError({ pos, record, field: 'header' }, `truncated header: the stream ends after ${raw.length} of ${HEADER_BYTES} bytes`);
    }
    this.records = record;
    return {
      pos,
      record,
      raw,
      offset: raw.readUInt32BE(8) * TWO_POW_32 + raw.readUInt32BE(12),
      length: raw.readUInt32BE(16) * TWO_POW_32 + raw.readUInt32BE(20),
      cmd: raw.readUInt32BE(24),
    };
  }

  private checkMagic(raw: Buffer, pos: number, record: number): void {
    const hi = raw.readUInt32BE(0);
    const lo = raw.readUInt32BE(4);
    const where = { pos, record, field: 'header magic' };
    if (record === 1) {
      if (hi === MAGIC_1_1_HI && lo === MAGIC_1_1_LO) this.format = '1.1';
      else if (hi === MAGIC_1_0_HI && lo === MAGIC_1_0_LO) this.format = '1.0';
      else if (hi === MAGIC_PREV_HI && lo === MAGIC_PREV_LO) {
        throw streamError(
          where,
          `magic ${hex(MAGIC_PREVIOUS)} is the previous thin_send format (before 1.0), which is not supported; send with thin-send-recv 1.0 or newer`,
        );
      } else {
        throw streamError(where, `unknown magic ${hex(raw.readBigUInt64BE(0))} (expected ${hex(MAGIC_1_1)} for format 1.1 or ${hex(MAGIC_1_0)} for 1.0)`);
      }
      this.magicHi = hi;
      this.magicLo = lo;
    } else if (hi !== this.magicHi || lo !== this.magicLo) {
      throw streamError(where, `magic ${hex(raw.readBigUInt64BE(0))} differs from the format ${this.format} magic of the first record`);
    }
  }

  private safeU64(h: Header, name: 'offset' | 'length', what: string): number {
    const hi = h.raw.readUInt32BE(name === 'offset' ? 8 : 16);
    if (hi > MAX_SAFE_HI || (name === 'offset' ? h.offset : h.length) > Number.MAX_SAFE_INTEGER) {
      const v = h.raw.readBigUInt64BE(name === 'offset' ? 8 : 16);
      throw streamError({ pos: h.pos + (name === 'offset' ? 8 : 16), record: h.record, field: `header ${name}` }, `${what} ${name} ${v} exceeds 2^53`);
    }
    return name === 'offset' ? h.offset : h.length;
  }

  private where(h: Header, field = 'header', volumeOffset?: number): Where {
    return { pos: h.pos, record: h.record, field, volumeOffset };
  }

  /** Reads exactly `length` payload bytes of h or throws naming where the stream ended. */
  private async payload(h: Header, length: number, volumeOffset?: number): Promise<Buffer> {
    const pos = this.r.position;
    const b = await this.r.read(length);
    if (b.length < length) {
      throw streamError(
        { pos, record: h.record, field: `${cmdName(h.cmd)} payload`, volumeOffset },
        `truncated payload: the stream ends at byte ${pos + b.length}, after ${b.length} of ${length} bytes`,
      );
    }
    return b;
  }

  /** The held DATA message, released when the next record is not its checksum record. */
  private takePending(next: Header | undefined): DataMessage | undefined {
    const p = this.pending;
    if (p === undefined) return undefined;
    this.pending = undefined;
    if (this.checksumLayout === 'records') {
      const after = next === undefined ? 'the end of the stream' : `${cmdName(next.cmd)} at byte ${next.pos}`;
      throw streamError(
        this.where(p.header, 'DATA', p.msg.piece?.recordOffsetBytes ?? p.msg.offsetBytes),
        `begin-info declares ${this.algorithm} checksums but this DATA record is followed by ${after}, not by its checksum record`,
      );
    }
    return p.msg;
  }

  /** A checksum group must be used up before the stream digest, END_STREAM or the end of input. */
  private checkNoOpenGroup(at: Where, what: string): void {
    const g = this.group;
    if (g === undefined) return;
    throw streamError(at, `the DATA checksum group at byte ${g.pos} lists ${g.entries.length} DATA records, but only ${g.next} came before ${what}`);
  }

  async *run(): AsyncGenerator<LinbitMessage> {
    try {
      const first = await this.readHeader();
      if (first === undefined) {
        // No bytes at all is a valid format 1.0 stream without records (thin_send 1.0 writes exactly
        // that for an empty volume or identical snapshots); thin_recv accepts it ("Empty input.", exit 0).
        this.format = '1.0';
        yield { type: 'begin', info: { formatVersion: '1.0' } };
        yield this.endMessage(0);
        return;
      }
      let next: Header | undefined = first;
      if (this.format === '1.0') {
        yield { type: 'begin', info: { formatVersion: '1.0' } };
      } else {
        if (first.cmd !== CMD_BEGIN_STREAM) {
          throw streamError(this.where(first), `a format 1.1 stream must start with BEGIN_STREAM (cmd 2), got ${cmdName(first.cmd)}`);
        }
        this.checkBeginHeader(first);
        next = await this.readHeader();
        if (next !== undefined && next.cmd === CMD_OPT_BEGIN_INFO) {
          yield { type: 'begin', info: await this.beginInfo(next) };
          next = undefined;
        } else {
          yield { type: 'begin', info: { formatVersion: '1.1' } };
        }
      }

      for (;;) {
        const h = next ?? (await this.readHeader());
        next = undefined;
        if (h === undefined) {
          const last = this.takePending(undefined);
          if (last !== undefined) yield last;
          const eofAt = { pos: this.r.position, record: this.records, field: 'end of input' };
          this.checkNoOpenGroup(eofAt, 'the end of the stream');
          if (this.format === '1.1') {
            throw streamError(eofAt, `the stream ends after ${this.records} records without END_STREAM (truncated?)`);
          }
          yield this.endMessage(this.records);
          return;
        }
        if (this.digestVerified !== undefined && h.cmd !== CMD_END_STREAM) {
          throw streamError(this.where(h), `${cmdName(h.cmd)} after the stream digest record; only END_STREAM may follow it`);
        }
        if (this.format === '1.0' && h.cmd !== CMD_DATA && h.cmd !== CMD_UNMAP) {
          throw streamError(this.where(h), `${cmdName(h.cmd)} is not allowed in a format 1.0 stream (only DATA and UNMAP)`);
        }
        if (h.cmd === CMD_OPT_DATA_CHECKSUM) {
          yield await this.dataChecksumRecord(h);
          continue;
        }
        const held = this.takePending(h);
        if (held !== undefined) yield held;

        switch (h.cmd) {
          case CMD_DATA:
            yield* this.dataRecord(h);
            break;
          case CMD_UNMAP: {
            const offset = this.safeU64(h, 'offset', 'UNMAP');
            const length = this.safeU64(h, 'length', 'UNMAP');
            if (!Number.isSafeInteger(offset + length)) {
              throw streamError(this.where(h, 'header', offset), `UNMAP end ${offset} + ${length} exceeds 2^53`);
            }
            this.ledger.addUnmap(offset, length);
            yield { type: 'unmap', offsetBytes: offset, lengthBytes: length };
            break;
          }
          case CMD_BEGIN_STREAM:
            throw streamError(this.where(h), 'BEGIN_STREAM again: it may only be the first record');
          case CMD_END_STREAM:
            this.checkNoOpenGroup(this.where(h), 'END_STREAM');
            yield await this.endRecord(h);
            return;
          case CMD_OPT_BEGIN_INFO:
            throw streamError(this.where(h), 'a begin-info record must directly follow BEGIN_STREAM');
          case CMD_OPT_STREAM_DIGEST:
            this.checkNoOpenGroup(this.where(h), 'the stream digest record');
            await this.streamDigestRecord(h);
            break;
          case CMD_OPT_DATA_CHECKSUM_GROUP:
            await this.groupRecord(h);
            break;
          default: {
            if ((h.cmd & CMD_OPTIONAL_BIT) === 0) {
              throw streamError(this.where(h), `unknown mandatory command ${h.cmd}`);
            }
            const length = this.safeU64(h, 'length', `${cmdName(h.cmd)} record`);
            const skippedFrom = this.r.position;
            const got = await this.r.skip(length);
            if (got < length) {
              throw streamError(
                { pos: skippedFrom, record: h.record, field: `${cmdName(h.cmd)} payload` },
                `truncated payload: the stream ends at byte ${skippedFrom + got}, after ${got} of ${length} bytes`,
              );
            }
            this.skipped++;
          }
        }
      }
    } finally {
      await this.r.close();
    }
  }

  private checkBeginHeader(h: Header): void {
    if (h.offset !== 0 || h.length !== 0) {
      throw streamError(
        this.where(h),
        `BEGIN_STREAM must have offset 0 and length 0, got offset ${h.raw.readBigUInt64BE(8)} length ${h.raw.readBigUInt64BE(16)}`,
      );
    }
  }

  private async beginInfo(h: Header): Promise<LinbitBeginInfo> {
    const length = this.safeU64(h, 'length', 'begin-info');
    if (length > BEGIN_INFO_MAX_BYTES) {
      throw streamError(this.where(h), `begin-info length ${length} exceeds ${BEGIN_INFO_MAX_BYTES} bytes`);
    }
    const payloadPos = this.r.position;
    const body = await this.payload(h, length);
    const { info, version } = parseBeginInfo(body, '1.1', { pos: payloadPos, record: h.record, field: 'begin-info payload' });
    if (info.checksum === 'sha256' || info.checksum === 'blake3') {
      this.checksumLayout = version === BEGIN_INFO_VERSION_GROUPS ? 'groups' : 'records';
      this.algorithm = info.checksum;
      this.ledger = new StreamLedger(true);
    }
    this.volumeSizeBytes = info.volumeSizeBytes;
    return info;
  }

  /** The checksum group entry for this DATA record (checked against it), or undefined when no group is open. */
  private groupEntry(h: Header, offset: number, length: number): (GroupEntry & { groupPos: number; algorithm: RecordChecksum }) | undefined {
    const g = this.group;
    if (g === undefined) {
      if (this.checksumLayout === 'groups') {
        throw streamError(
          this.where(h, 'header', offset),
          `begin-info declares ${this.algorithm} checksum groups but no DATA checksum group covers this DATA record`,
        );
      }
      return undefined;
    }
    const e = g.entries[g.next]!;
    if (e.offset !== offset || e.length !== length) {
      throw streamError(
        this.where(h, 'header', offset),
        `DATA record of ${length} bytes, but the DATA checksum group at byte ${g.pos} lists offset ${e.offset}, length ${e.length} as its entry ${g.next + 1} of ${g.entries.length}`,
      );
    }
    g.next++;
    if (g.next === g.entries.length) this.group = undefined;
    return { ...e, groupPos: g.pos, algorithm: g.algorithm };
  }

  private mismatch(
    h: Header,
    payloadPos: number,
    offset: number,
    length: number,
    actual: Buffer,
    expected: Buffer,
    checksumPos: number,
    what: string,
    pieces: boolean,
    algorithm: RecordChecksum,
  ): ThinshipError {
    const note = pieces ? `; the record was longer than ${this.pieceBytes} bytes, so its earlier pieces were delivered before the check` : '';
    return streamError(
      { pos: payloadPos, record: h.record, field: 'DATA payload', volumeOffset: offset },
      `${algorithm} of the ${length}-byte payload is ${actual.toString('hex')}, but the ${what} at byte ${checksumPos} says ${expected.toString('hex')}${note}`,
      'CHECKSUM_MISMATCH',
      { checksumRecordPosition: checksumPos },
    );
  }

  /**
   * One DATA record: whole when it is at most pieceBytes (verified against its
   * group entry before it is delivered), else as consecutive pieces (the last
   * held back until the record's checksum, if any, is verified).
   */
  private async *dataRecord(h: Header): AsyncGenerator<DataMessage> {
    const offset = this.safeU64(h, 'offset', 'DATA');
    const length = this.safeU64(h, 'length', 'DATA');
    if (length > this.maxDataBytes) {
      throw streamError(
        { pos: h.pos + 16, record: h.record, field: 'header length', volumeOffset: offset },
        `DATA length ${length} exceeds the limit of ${this.maxDataBytes} bytes`,
      );
    }
    if (!Number.isSafeInteger(offset + length)) {
      throw streamError(this.where(h, 'header', offset), `DATA end ${offset} + ${length} exceeds 2^53`);
    }
    if (this.volumeSizeBytes !== undefined && offset + length > this.volumeSizeBytes) {
      throw streamError(
        { pos: h.pos + 16, record: h.record, field: 'header length', volumeOffset: offset },
        `DATA [${offset}, +${length}) goes past the end of the volume (begin-info volumeSizeBytes ${this.volumeSizeBytes})`,
      );
    }
    const entry = this.groupEntry(h, offset, length);
    if (!this.ledger.checksums) this.ledger.addData(offset, length);
    const payloadPos = this.r.position;
    if (length <= this.pieceBytes) {
      const data = await this.payload(h, length, offset);
      const msg: DataMessage = { type: 'data', offsetBytes: offset, data };
      if (entry === undefined) {
        this.pending = { msg, header: h, payloadPos };
        return;
      }
      const { actual, ok } = checkDataChecksum(data, entry.sum, entry.algorithm);
      if (!ok) throw this.mismatch(h, payloadPos, offset, length, actual, entry.sum, entry.groupPos, 'DATA checksum group', false, entry.algorithm);
      this.verified(offset, length, entry.sum);
      msg.checksum = entry.sum;
      yield msg;
      return;
    }
    // Hash the pieces only when a checksum will come (a group entry, or v1's record after the DATA).
    const hashAlgorithm = entry?.algorithm ?? (this.checksumLayout === 'records' ? this.algorithm : undefined);
    const hash = hashAlgorithm === undefined ? undefined : runningChecksum(hashAlgorithm);
    for (let done = 0; done < length;) {
      const n = Math.min(this.pieceBytes, length - done);
      const b = await this.r.read(n);
      if (b.length < n) {
        throw streamError(
          { pos: payloadPos, record: h.record, field: 'DATA payload', volumeOffset: offset },
          `truncated payload: the stream ends at byte ${payloadPos + done + b.length}, after ${done + b.length} of ${length} bytes`,
        );
      }
      hash?.update(b);
      const msg: DataMessage = {
        type: 'data',
        offsetBytes: offset + done,
        data: b,
        piece: { recordOffsetBytes: offset, recordLengthBytes: length, last: done + n === length },
      };
      done += n;
      if (done < length) {
        yield msg;
      } else if (entry === undefined) {
        this.pending = { msg, header: h, payloadPos, hash };
      } else {
        const { actual, ok } = checkDataChecksum(hash!, entry.sum, entry.algorithm);
        if (!ok) throw this.mismatch(h, payloadPos, offset, length, actual, entry.sum, entry.groupPos, 'DATA checksum group', true, entry.algorithm);
        this.verified(offset, length, entry.sum);
        msg.checksum = entry.sum;
        yield msg;
      }
    }
  }

  private async groupRecord(h: Header): Promise<void> {
    if (this.checksumLayout === 'records') {
      throw streamError(this.where(h), 'a DATA checksum group in a stream whose begin-info (v1) promises one DATA checksum record after each DATA');
    }
    const g = this.group;
    if (g !== undefined) {
      throw streamError(this.where(h), `a new DATA checksum group while ${g.entries.length - g.next} DATA records of the group at byte ${g.pos} are still due`);
    }
    const length = this.safeU64(h, 'length', 'DATA checksum group');
    const n = (length - 1) / GROUP_ENTRY_BYTES;
    if (!Number.isInteger(n) || n < 1 || n > GROUP_MAX_RECORDS) {
      throw streamError(this.where(h), `DATA checksum group length must be 1 + ${GROUP_ENTRY_BYTES} × n with 1 ≤ n ≤ ${GROUP_MAX_RECORDS}, got ${length}`);
    }
    const payloadPos = this.r.position;
    const body = await this.payload(h, length);
    const algorithm = this.algorithmOf(body[0]!, { pos: payloadPos, record: h.record, field: 'DATA checksum group algorithm' });
    const entries: GroupEntry[] = [];
    for (let i = 0; i < n; i++) {
      const at = 1 + i * GROUP_ENTRY_BYTES;
      const where = { pos: payloadPos + at, record: h.record, field: `DATA checksum group entry ${i + 1}` };
      const offset = Number(body.readBigUInt64BE(at));
      const len = Number(body.readBigUInt64BE(at + 8));
      if (!Number.isSafeInteger(offset + len) || offset + len > Number.MAX_SAFE_INTEGER) {
        throw streamError(where, `offset ${body.readBigUInt64BE(at)} + length ${body.readBigUInt64BE(at + 8)} exceeds 2^53`);
      }
      entries.push({ offset, length: len, sum: Buffer.from(body.subarray(at + 16, at + GROUP_ENTRY_BYTES)) });
    }
    if (h.offset !== entries[0]!.offset) {
      throw streamError(
        this.where(h, 'header offset'),
        `DATA checksum group header names volume offset ${h.raw.readBigUInt64BE(8)}, but its first entry is at ${entries[0]!.offset}`,
      );
    }
    this.group = { pos: h.pos, record: h.record, algorithm, entries, next: 0 };
  }

  private async dataChecksumRecord(h: Header): Promise<DataMessage> {
    if (this.checksumLayout === 'groups') {
      throw streamError(this.where(h), 'a DATA checksum record in a stream whose begin-info (v2) declares DATA checksum groups');
    }
    const p = this.pending;
    if (p === undefined) throw streamError(this.where(h), 'a DATA checksum record must directly follow its DATA record');
    this.pending = undefined;
    const recordOffset = p.msg.piece?.recordOffsetBytes ?? p.msg.offsetBytes;
    const recordLength = p.msg.piece?.recordLengthBytes ?? p.msg.data.length;
    if (h.length !== CHECKSUM_RECORD_BYTES) {
      throw streamError(this.where(h), `DATA checksum record length must be ${CHECKSUM_RECORD_BYTES}, got ${h.raw.readBigUInt64BE(16)}`);
    }
    if (h.offset !== recordOffset) {
      throw streamError(
        this.where(h, 'header offset'),
        `DATA checksum record names volume offset ${h.raw.readBigUInt64BE(8)}, but the DATA record before it is at ${recordOffset}`,
      );
    }
    const payloadPos = this.r.position;
    const body = await this.payload(h, CHECKSUM_RECORD_BYTES, recordOffset);
    const algorithm = this.algorithmOf(body[0]!, { pos: payloadPos, record: h.record, field: 'DATA checksum algorithm' });
    const expected = Buffer.from(body.subarray(1));
    if (p.msg.piece !== undefined && p.hash === undefined) {
      // Only a stream without a checksum declaration gets here: its big records were not hashed as they streamed.
      throw streamError(
        this.where(h),
        `a DATA checksum record after a ${recordLength}-byte DATA record (delivered in pieces) in a stream whose begin-info does not declare checksums: it cannot be checked`,
      );
    }
    const { actual, ok } = checkDataChecksum(p.hash ?? p.msg.data, expected, algorithm);
    if (!ok) {
      throw this.mismatch(p.header, p.payloadPos, recordOffset, recordLength, actual, expected, h.pos, 'checksum record', p.msg.piece !== undefined, algorithm);
    }
    this.verified(recordOffset, recordLength, expected);
    p.msg.checksum = expected;
    return p.msg;
  }

  /**
   * The per-DATA algorithm of a checksum or group record's algorithm byte: a
   * byte this version does not know, or one other than begin-info declared,
   * is refused at `where`.
   */
  private algorithmOf(byte: number, where: { pos: number; record: number; field: string }): RecordChecksum {
    const known = (Object.keys(CHECKSUM_ALGO_BYTE) as RecordChecksum[]).find((a) => CHECKSUM_ALGO_BYTE[a] === byte);
    const names = Object.entries(CHECKSUM_ALGO_BYTE)
      .map(([a, b]) => `${b} = ${a}`)
      .join(', ');
    if (known === undefined) throw streamError(where, `unknown checksum algorithm ${byte} (${names})`);
    if (this.algorithm !== undefined && known !== this.algorithm) {
      throw streamError(where, `checksum algorithm ${byte} (${known}), but begin-info declares ${this.algorithm} (${CHECKSUM_ALGO_BYTE[this.algorithm]})`);
    }
    return known;
  }

  /** A DATA record whose checksum matched: it enters the counts and the digest chain (when checksums are declared). */
  private verified(offsetBytes: number, lengthBytes: number, sum: Buffer): void {
    if (this.ledger.checksums) this.ledger.addData(offsetBytes, lengthBytes, sum);
  }

  private async streamDigestRecord(h: Header): Promise<void> {
    if (!this.ledger.checksums) {
      throw streamError(this.where(h), 'a stream digest record needs a begin-info that declares checksums (sha256 or blake3)');
    }
    if (h.offset !== 0 || h.length !== DIGEST_RECORD_BYTES) {
      throw streamError(
        this.where(h),
        `stream digest record must have offset 0 and length ${DIGEST_RECORD_BYTES}, got offset ${h.raw.readBigUInt64BE(8)} length ${h.raw.readBigUInt64BE(16)}`,
      );
    }
    const payloadPos = this.r.position;
    const body = await this.payload(h, DIGEST_RECORD_BYTES);
    if (body[0] !== CHECKSUM_ALGO_SHA256) {
      throw streamError(
        { pos: payloadPos, record: h.record, field: 'stream digest algorithm' },
        `unknown stream digest algorithm ${body[0]} (1 = sha256, the chain of every stream)`,
      );
    }
    const expected = Buffer.from(body.subarray(1));
    if (!this.ledger.digestMatches(expected)) {
      throw streamError(
        { pos: payloadPos + 1, record: h.record, field: 'stream digest' },
        `the stream digest over ${this.ledger.counts.dataRecords} DATA and ${this.ledger.counts.unmapRecords} UNMAP records is ${this.ledger.digest.toString('hex')}, but the record says ${expected.toString('hex')}`,
        'CHECKSUM_MISMATCH',
      );
    }
    this.digestVerified = expected;
  }

  private async endRecord(h: Header): Promise<LinbitEndMessage> {
    if (h.offset !== 0 || h.length !== END_PAYLOAD_BYTES) {
      throw streamError(
        this.where(h),
        `END_STREAM must have offset 0 and length ${END_PAYLOAD_BYTES}, got offset ${h.raw.readBigUInt64BE(8)} length ${h.raw.readBigUInt64BE(16)}`,
      );
    }
    if (this.checksumLayout !== undefined && this.digestVerified === undefined) {
      throw streamError(this.where(h), `begin-info declares ${this.algorithm} checksums but END_STREAM is not preceded by the stream digest record`);
    }
    const payloadPos = this.r.position;
    const stats = await this.payload(h, END_PAYLOAD_BYTES);
    const countError = (name: string, at: number, seen: number) =>
      streamError(
        { pos: payloadPos + at, record: h.record, field: `END_STREAM ${name}` },
        `END_STREAM says ${name} = ${stats.readBigUInt64BE(at)} but the stream had ${seen}`,
      );
    // n_chunks counts the byte stream's own records (framing); n_data and n_unmap are the stream's End counts.
    if (stats.readBigUInt64BE(0) !== BigInt(this.records)) throw countError('n_chunks', 0, this.records);
    const bad = this.ledger.endCountMismatch({ dataRecords: Number(stats.readBigUInt64BE(8)), unmapRecords: Number(stats.readBigUInt64BE(16)) });
    if (bad !== undefined) throw bad.field === 'dataRecords' ? countError('n_data', 8, bad.counted) : countError('n_unmap', 16, bad.counted);
    const afterEnd = this.r.position;
    if (!(await this.r.atEof())) {
      throw streamError({ pos: afterEnd, record: h.record, field: 'after END_STREAM' }, 'trailing bytes after END_STREAM');
    }
    return this.endMessage(this.records);
  }

  private endMessage(records: number): LinbitEndMessage {
    const end: LinbitEndMessage = {
      type: 'end',
      records,
      ...this.ledger.counts,
      skippedRecords: this.skipped,
    };
    if (this.digestVerified !== undefined) end.digest = this.digestVerified;
    return end;
  }
}
