/**
 * The sender's serializer of ApplyStream requests: DATA, which carries every
 * byte of a transfer, is written straight into its protobuf wire format (one
 * buffer per message, the payload copied into it once), where the generated
 * protobufjs encoder (fromObject, then a Writer that sizes nested messages
 * and copies the payload; its writeBytesBuffer_set was 3 % of the sender's
 * main thread) did more work and made more garbage. Everything else (begin,
 * unmap, end, and any DATA whose fields are not the plain numbers and
 * buffers the sender makes) goes through the generated encoder unchanged.
 * Only the client uses this (proto.ts newReceiverClient); the server decodes
 * with protobufjs as before, and test/unit/data-encoder.test.ts checks that
 * it reads back what the generated encoder would have sent.
 *
 * Field numbers: proto/thinship/v1/receiver.proto, ApplyStreamRequest.data = 2;
 * Data: offset_bytes = 1, length_bytes = 2 (uint64), payload = 3 (bytes),
 * encoding = 4 (enum Encoding), checksum = 5 (bytes).
 *
 * grpc-js copies the returned buffer once more, into its 5-byte-prefixed
 * frame (node_modules/@grpc/grpc-js/build/src/compression-filter.js,
 * IdentityHandler.writeMessage); that copy cannot be avoided from outside,
 * but it lets the serialized message's memory be reused (below).
 */
import type { ApplyStreamRequest } from './proto.js';
import { compressBound } from '../stream/zstd.js';
import { DEFAULT_MAX_OP_BYTES } from '../thin/plan.js';

/** enum Encoding of receiver.proto. */
const ENCODING_NUMBERS: Readonly<Record<string, number>> = { ENCODING_UNSPECIFIED: 0, ENCODING_RAW: 1, ENCODING_ZSTD: 2, ENCODING_ZERO: 3 };

/** Wire tags: (field number << 3) | wire type (0 varint, 2 length-delimited). */
const TAG_REQUEST_DATA = (2 << 3) | 2;
const TAG_OFFSET = (1 << 3) | 0;
const TAG_LENGTH = (2 << 3) | 0;
const TAG_PAYLOAD = (3 << 3) | 2;
const TAG_ENCODING = (4 << 3) | 0;
const TAG_CHECKSUM = (5 << 3) | 2;

function varintBytes(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes `v` (a non-negative safe integer) as a base-128 varint at `pos`; returns the position after it. */
function putVarint(buf: Buffer, pos: number, v: number): number {
  while (v >= 128) {
    buf[pos++] = (v % 128) | 128;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

const isUint64 = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;

/**
 * The wire bytes of `{ kind: 'data', data }`, or undefined when `req` is not
 * a DATA request of the shape the sender makes (numbers for the uint64s, an
 * enum name for the encoding, Buffers for the bytes): those go to the
 * generated encoder. Fields at their proto3 default are left out, as a
 * decoder fills them in.
 */
export function encodeDataRequest(req: ApplyStreamRequest, alloc: (bytes: number) => Buffer = (bytes) => Buffer.allocUnsafe(bytes)): Buffer | undefined {
  const d = req.data;
  if (req.kind !== 'data' || !d || req.begin != null || req.unmap != null || req.end != null) return undefined;
  const offset = d.offsetBytes ?? 0;
  const length = d.lengthBytes ?? 0;
  const payload = d.payload ?? EMPTY;
  const checksum = d.checksum ?? EMPTY;
  const encoding = d.encoding === undefined ? 0 : ENCODING_NUMBERS[d.encoding];
  if (!isUint64(offset) || !isUint64(length) || !isBytes(payload) || !isBytes(checksum) || encoding === undefined) return undefined;

  let inner = 0;
  if (offset !== 0) inner += 1 + varintBytes(offset);
  if (length !== 0) inner += 1 + varintBytes(length);
  if (payload.length !== 0) inner += 1 + varintBytes(payload.length) + payload.length;
  if (encoding !== 0) inner += 1 + varintBytes(encoding);
  if (checksum.length !== 0) inner += 1 + varintBytes(checksum.length) + checksum.length;

  const out = alloc(1 + varintBytes(inner) + inner);
  out[0] = TAG_REQUEST_DATA;
  let p = putVarint(out, 1, inner);
  if (offset !== 0) {
    out[p++] = TAG_OFFSET;
    p = putVarint(out, p, offset);
  }
  if (length !== 0) {
    out[p++] = TAG_LENGTH;
    p = putVarint(out, p, length);
  }
  if (payload.length !== 0) {
    out[p++] = TAG_PAYLOAD;
    p = putVarint(out, p, payload.length);
    out.set(payload, p);
    p += payload.length;
  }
  if (encoding !== 0) {
    out[p++] = TAG_ENCODING;
    p = putVarint(out, p, encoding);
  }
  if (checksum.length !== 0) {
    out[p++] = TAG_CHECKSUM;
    p = putVarint(out, p, checksum.length);
    out.set(checksum, p);
    p += checksum.length;
  }
  if (p !== out.length) throw new Error(`encodeDataRequest: wrote ${p} of ${out.length} bytes`); // a sizing bug here, never input
  return out;
}

const EMPTY = new Uint8Array(0);

/**
 * Serialized DATA messages are written into recycled memory when the
 * channel lets them be: grpc-js copies each serialized message into its own
 * frame before it calls the write's callback (with retries disabled, as
 * rpc/client.ts channelOf sets: a retrying call would call back first and
 * keep the message for a replay), so the caller gives the memory back from
 * that callback (releaseSerialized). One size: room for a frame of the
 * default op size plus the fields; larger messages get memory of their own.
 */
const MESSAGE_BYTES = compressBound(DEFAULT_MAX_OP_BYTES) + 64;
/** Messages in flight: rpc/client.ts keeps 4 writes outstanding; a few more for other calls of a daemon. */
const MAX_FREE_MESSAGES = 8;
const freeMessages: ArrayBuffer[] = [];
const lentFor = new WeakMap<object, ArrayBuffer>();

function recycledEncode(req: ApplyStreamRequest): Buffer | undefined {
  let lent: ArrayBuffer | undefined;
  const out = encodeDataRequest(req, (bytes) => {
    if (bytes > MESSAGE_BYTES) return Buffer.allocUnsafe(bytes);
    lent = freeMessages.pop() ?? new ArrayBuffer(MESSAGE_BYTES);
    return Buffer.from(lent, 0, bytes);
  });
  if (lent) lentFor.set(req, lent);
  return out;
}

/**
 * Gives back the memory `req` was serialized into, once grpc-js called the
 * write's callback (see above); anything else is ignored, and so is a
 * request given twice.
 */
export function releaseSerialized(req: ApplyStreamRequest): void {
  const ab = lentFor.get(req);
  if (!ab) return;
  lentFor.delete(req);
  if (freeMessages.length < MAX_FREE_MESSAGES) freeMessages.push(ab);
}

/** Serialized messages' memory kept for reuse (tests). */
export function keptMessageBuffers(): number {
  return freeMessages.length;
}

/**
 * ApplyStream's request serializer for the client: DATA by encodeDataRequest,
 * the rest by `generated`. `recycle`: DATA into recycled memory (only for a
 * channel with retries disabled; the caller must releaseSerialized each
 * request from its write callback, or the memory is left to the GC).
 */
export function applyStreamSerializer(generated: (req: ApplyStreamRequest) => Buffer, recycle = false): (req: ApplyStreamRequest) => Buffer {
  return recycle ? (req) => recycledEncode(req) ?? generated(req) : (req) => encodeDataRequest(req) ?? generated(req);
}
