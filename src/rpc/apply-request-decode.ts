/**
 * The server's decoder of ApplyStreamRequest messages (rpc/server.ts installs
 * it as ApplyStream's requestDeserialize; the client's serializer is
 * protobufjs's, unchanged). A message whose record is a Data is decoded here
 * from the protobuf wire format, its payload and checksum left as views into
 * the message buffer grpc-js assembled (no copy, no protobufjs message and
 * toObject); every other message goes to the generated decoder unchanged.
 *
 * The result is what the generated decoder gives with proto.ts's
 * LOADER_OPTIONS: `{ data: { offsetBytes, lengthBytes, payload, encoding,
 * checksum }, kind: 'data' }`, every field present (proto3 defaults for the
 * ones not sent), uint64 as Number, the encoding as its enum name (a number
 * the enum does not name stays a number, as protobufjs leaves it).
 *
 * Bytes the generated decoder would read as garbage or throw on are refused
 * with a message naming the field and the byte offset in the message:
 * truncated varints and lengths past the end, varints longer than 10 bytes,
 * wrong wire types for known fields, a field given twice, a Data beside
 * another record, field number 0, tags above 32 bits, and uint64 values above 2^53 - 1. Refusing
 * does not throw (grpc-js would answer INTERNAL "Error deserializing request"
 * and drop the message): it returns a MalformedRequest, which the handler
 * refuses as BAD_STREAM with that text. Unknown fields are skipped, as
 * protobuf requires.
 */
import type { ApplyStreamRequest__Output } from './proto.js';

/** A request the decoder refused: `malformed` says which field, where and why. */
export interface MalformedRequest {
  kind?: undefined;
  malformed: string;
}

export type DecodedApplyRequest = ApplyStreamRequest__Output | MalformedRequest;

export function isMalformed(m: DecodedApplyRequest): m is MalformedRequest {
  return typeof (m as MalformedRequest).malformed === 'string';
}

/** Encoding's values by number (proto/thinship/v1/receiver.proto). */
const ENCODING_NAMES: readonly string[] = ['ENCODING_UNSPECIFIED', 'ENCODING_RAW', 'ENCODING_ZSTD', 'ENCODING_ZERO'];

const WIRE_NAMES = ['varint', '64-bit', 'length-delimited', 'start group', 'end group', '32-bit', 'wire type 6', 'wire type 7'];

class WireError extends Error {}

/** A varint at pos: its value (exact below 2^53; `big` when not) and the position after it. */
interface Varint {
  value: number;
  /** The low 32 bits as a signed int32 (what an enum field takes). */
  int32: number;
  big: boolean;
  next: number;
}

function readVarint(b: Uint8Array, pos: number, end: number, what: string): Varint {
  let lo = 0; // bits 0..27
  let hi = 0; // bits 28..63, as a float (exact while below 2^53 overall)
  let low32 = 0;
  let big = false;
  const start = pos;
  for (let i = 0; ; i++) {
    if (pos >= end) throw new WireError(`${what} at byte ${start}: the varint is cut off at byte ${end} (the end of its message)`);
    if (i === 10) throw new WireError(`${what} at byte ${start}: the varint is longer than 10 bytes`);
    const byte = b[pos++]!;
    const bits = byte & 0x7f;
    if (i < 4) lo |= bits << (7 * i);
    else {
      if (i === 9 && bits > 1) throw new WireError(`${what} at byte ${start}: the varint does not fit in 64 bits`);
      hi += bits * 2 ** (7 * i);
    }
    if (i < 5) low32 = low32 | (bits << (7 * i)) | 0;
    if (byte < 0x80) break;
  }
  const value = lo + hi;
  if (value > Number.MAX_SAFE_INTEGER) big = true;
  return { value, int32: low32, big, next: pos };
}

/** The varint at pos (already read once, so valid) exactly, for an error message. */
function exactVarint(b: Uint8Array, pos: number): bigint {
  let v = 0n;
  for (let i = 0; ; i++) {
    const byte = b[pos + i]!;
    v |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if (byte < 0x80) return v;
  }
}

/** A field tag at pos: field number and wire type (a tag above 32 bits is refused: protobufjs would read its low 32 bits). */
function readTag(b: Uint8Array, pos: number, end: number, what: string): { field: number; wt: number; next: number } {
  const t = readVarint(b, pos, end, what);
  if (t.value > 0xffffffff) throw new WireError(`${what} at byte ${pos}: the tag does not fit in 32 bits`);
  return { field: Math.floor(t.value / 8), wt: t.value & 7, next: t.next };
}

/** Skips the value of an unknown field with this wire type at pos; returns the position after it. */
function skipValue(b: Uint8Array, pos: number, end: number, wireType: number, field: number, what: string, depth = 0): number {
  const at = `${what}: unknown field ${field} (${WIRE_NAMES[wireType]})`;
  switch (wireType) {
    case 0:
      return readVarint(b, pos, end, at).next;
    case 1:
    case 5: {
      const n = wireType === 1 ? 8 : 4;
      if (pos + n > end) throw new WireError(`${at} at byte ${pos}: ${n} bytes needed, ${end - pos} left in its message`);
      return pos + n;
    }
    case 2: {
      const len = readVarint(b, pos, end, `${at} length`);
      if (len.value > end - len.next)
        throw new WireError(`${at} at byte ${pos}: length ${len.value} runs past the end of its message (${end - len.next} bytes left)`);
      return len.next + len.value;
    }
    case 3: {
      if (depth >= 32) throw new WireError(`${at} at byte ${pos}: groups nested more than 32 deep`);
      for (;;) {
        const tag = readTag(b, pos, end, `${at} (inside the group)`);
        const f = tag.field;
        const wt = tag.wt;
        if (wt === 4) {
          if (f !== field) throw new WireError(`${at} at byte ${pos}: the group ends with field ${f}`);
          return tag.next;
        }
        if (f === 0) throw new WireError(`${at} at byte ${pos}: field number 0 inside the group`);
        pos = skipValue(b, tag.next, end, wt, f, what, depth + 1);
      }
    }
    default:
      throw new WireError(`${at} at byte ${pos}: not a valid wire type`);
  }
}

/** Decodes the Data in b[start, end) (the offsets are the whole message's). */
function decodeData(b: Buffer, start: number, end: number): NonNullable<ApplyStreamRequest__Output['data']> {
  let offsetBytes = 0;
  let lengthBytes = 0;
  let payload: Buffer | undefined;
  let encoding: string | number = ENCODING_NAMES[0]!;
  let checksum: Buffer | undefined;
  const seen = new Set<number>();
  const FIELDS = ['', 'offset_bytes', 'length_bytes', 'payload', 'encoding', 'checksum'];
  const WANT = [0, 0, 0, 2, 0, 2];
  let pos = start;
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(b, pos, end, 'data: a field tag');
    const { field, wt } = tag;
    if (field === 0) throw new WireError(`data: field number 0 at byte ${tagAt}`);
    if (field > 5) {
      pos = skipValue(b, tag.next, end, wt, field, 'data');
      continue;
    }
    const name = `data.${FIELDS[field]} (field ${field})`;
    if (wt !== WANT[field]) throw new WireError(`${name} at byte ${tagAt}: ${WIRE_NAMES[wt]}, expected ${WIRE_NAMES[WANT[field]!]}`);
    if (seen.has(field)) throw new WireError(`${name} at byte ${tagAt}: given more than once`);
    seen.add(field);
    if (wt === 0) {
      const v = readVarint(b, tag.next, end, name);
      pos = v.next;
      if (field === 4) {
        encoding = ENCODING_NAMES[v.int32] ?? v.int32;
      } else {
        if (v.big) throw new WireError(`${name} at byte ${tag.next}: ${exactVarint(b, tag.next)} is above 2^53 - 1`);
        if (field === 1) offsetBytes = v.value;
        else lengthBytes = v.value;
      }
    } else {
      const len = readVarint(b, tag.next, end, `${name} length`);
      if (len.value > end - len.next)
        throw new WireError(`${name} at byte ${tag.next}: length ${len.value} runs past the end of its message (${end - len.next} bytes left)`);
      const v = len.value === 0 ? Buffer.alloc(0) : b.subarray(len.next, len.next + len.value);
      pos = len.next + len.value;
      if (field === 3) payload = v;
      else checksum = v;
    }
  }
  return { offsetBytes, lengthBytes, payload: payload ?? Buffer.alloc(0), encoding: encoding as never, checksum: checksum ?? Buffer.alloc(0) };
}

/**
 * requestDeserialize for the server: `generated` is the proto-loader
 * deserializer, used for every message that carries no Data.
 */
export function applyRequestDeserializer(generated: (b: Buffer) => ApplyStreamRequest__Output): (b: Buffer) => DecodedApplyRequest {
  return (b: Buffer) => {
    const end = b.length;
    let dataStart = -1;
    let dataEnd = -1;
    let dataTagAt = -1;
    let others = 0;
    let sawData = false;
    try {
      let pos = 0;
      while (pos < end) {
        const tagAt = pos;
        const tag = readTag(b, pos, end, 'a field tag');
        const { field, wt } = tag;
        if (field === 2) {
          sawData = true;
          if (wt !== 2) throw new WireError(`data (field 2) at byte ${tagAt}: ${WIRE_NAMES[wt]}, expected ${WIRE_NAMES[2]}`);
          if (dataStart >= 0) throw new WireError(`data (field 2) at byte ${tagAt}: given more than once`);
          const len = readVarint(b, tag.next, end, 'data (field 2) length');
          if (len.value > end - len.next)
            throw new WireError(`data (field 2) at byte ${tag.next}: length ${len.value} runs past the end of the message (${end - len.next} bytes left)`);
          dataTagAt = tagAt;
          dataStart = len.next;
          dataEnd = len.next + len.value;
          pos = dataEnd;
          continue;
        }
        if (field === 0) throw new WireError(`field number 0 at byte ${tagAt}`);
        if (field <= 4) others++;
        pos = skipValue(b, tag.next, end, wt, field, 'the message');
      }
    } catch (e) {
      // Framing the generated decoder will judge itself (no Data seen yet): unchanged behaviour.
      if (!sawData && e instanceof WireError) return generated(b);
      if (e instanceof WireError) return { malformed: `ApplyStreamRequest: ${e.message}` };
      throw e;
    }
    if (dataStart < 0) return generated(b);
    if (others > 0)
      return { malformed: `ApplyStreamRequest: data (field 2) at byte ${dataTagAt} comes with another record (begin, unmap or end) in the same message` };
    try {
      return { data: decodeData(b, dataStart, dataEnd), kind: 'data' };
    } catch (e) {
      if (e instanceof WireError) return { malformed: `ApplyStreamRequest: ${e.message}` };
      throw e;
    }
  };
}
