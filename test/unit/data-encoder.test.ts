import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeDataRequest, applyStreamSerializer, releaseSerialized, keptMessageBuffers } from '../../src/rpc/data-encoder.js';
import { receiverProto, newReceiverClient, type ApplyStreamRequest } from '../../src/rpc/proto.js';
import * as grpc from '@grpc/grpc-js';

const { service } = receiverProto();
/** The generated protobufjs encoder and the server's decoder. */
const generated = service.ApplyStream.requestSerialize;
const decode = service.ApplyStream.requestDeserialize;

const ENCODINGS = ['ENCODING_RAW', 'ENCODING_ZSTD', 'ENCODING_ZERO', 'ENCODING_UNSPECIFIED'] as const;

/** Our bytes must decode (protobufjs, as the server does) to exactly what the generated encoder's bytes decode to. */
function same(req: ApplyStreamRequest, what: string): void {
  const ours = encodeDataRequest(req);
  assert.ok(ours, `${what}: encoded by the hand-written path`);
  assert.deepEqual(decode(ours), decode(generated(req)), what);
}

test('DATA requests decode with protobufjs to the same message as the generated encoder makes (edges)', () => {
  const offsets = [0, 1, 127, 128, 16383, 16384, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35 + 4096, 2 ** 52, 2 ** 53 - 4096, Number.MAX_SAFE_INTEGER];
  const lengths = [0, 1, 4096, 1024 * 1024, 4 * 1024 * 1024, 64 * 1024 * 1024, 2 ** 53 - 1];
  const payloads = [Buffer.alloc(0), Buffer.from([0]), randomBytes(127), randomBytes(128), randomBytes(16384), randomBytes(70_000)];
  const checksums = [undefined, Buffer.alloc(0), randomBytes(32)];
  let n = 0;
  for (const offsetBytes of offsets)
    for (const lengthBytes of lengths)
      for (const payload of payloads)
        for (const checksum of checksums) {
          const encoding = ENCODINGS[n++ % ENCODINGS.length];
          const data = { offsetBytes, lengthBytes, payload, encoding, ...(checksum ? { checksum } : {}) };
          same({ kind: 'data', data }, JSON.stringify({ offsetBytes, lengthBytes, payload: payload.length, encoding, checksum: checksum?.length }));
        }
  same({ kind: 'data', data: {} }, 'an empty Data');
  same({ kind: 'data', data: { payload: randomBytes(10).subarray(3, 7), checksum: randomBytes(40).subarray(4, 36) } }, 'views inside larger buffers');
});

test('random DATA requests decode to the same message as the generated encoder makes', () => {
  for (let i = 0; i < 2000; i++) {
    const r = randomBytes(8);
    const offsetBytes = r.readUInt32LE(0) % 2 === 0 ? r.readUInt32LE(4) : Math.floor(Math.random() * Number.MAX_SAFE_INTEGER);
    const lengthBytes = Math.floor(Math.random() * 2 ** (Math.random() * 53));
    const payload = randomBytes(Math.floor(Math.random() * 3000));
    const data = { offsetBytes, lengthBytes, payload, encoding: ENCODINGS[i % 4], ...(i % 3 ? { checksum: randomBytes(32) } : {}) };
    same({ kind: 'data', data }, `random ${JSON.stringify({ offsetBytes, lengthBytes, payload: payload.length })}`);
  }
});

test('every other request, and DATA the hand-written path does not take, goes to the generated encoder unchanged', () => {
  const serialize = applyStreamSerializer(generated);
  const others: ApplyStreamRequest[] = [
    { kind: 'unmap', unmap: { offsetBytes: 4096, lengthBytes: 8192 } },
    { kind: 'end', end: { dataRecords: 3, dataBytes: 12288 } },
    { kind: 'begin', begin: { protocolVersion: 1, target: 't', volumeSizeBytes: 2 ** 40 } },
    // Not the sender's shapes: a string uint64, a negative or unsafe number, a numeric enum, a string payload, data without kind.
    { kind: 'data', data: { offsetBytes: '4096', lengthBytes: 1 } },
    { kind: 'data', data: { offsetBytes: -1, lengthBytes: 1 } },
    { kind: 'data', data: { offsetBytes: 2 ** 64, lengthBytes: 1 } },
    { kind: 'data', data: { offsetBytes: 1.5, lengthBytes: 1 } },
    { kind: 'data', data: { offsetBytes: 0, lengthBytes: 1, payload: 'AAEC' } },
    { kind: 'data', data: { lengthBytes: 1, encoding: 'ENCODING_BOGUS' as 'ENCODING_RAW' } },
    { data: { offsetBytes: 0, lengthBytes: 1 } },
  ];
  for (const req of others) {
    assert.equal(encodeDataRequest(req), undefined, JSON.stringify(req));
    assert.deepEqual(serialize(req), generated(req), JSON.stringify(req));
  }
});

test('the client made by newReceiverClient serializes DATA by hand and leaves the service definition the server uses alone', () => {
  const client = newReceiverClient('localhost:1', grpc.credentials.createInsecure());
  try {
    const ctor = client.constructor as unknown as { service: typeof service };
    const req: ApplyStreamRequest = { kind: 'data', data: { offsetBytes: 8192, lengthBytes: 3, payload: Buffer.from('abc'), encoding: 'ENCODING_RAW' } };
    assert.deepEqual(ctor.service.ApplyStream.requestSerialize(req), encodeDataRequest(req));
    assert.equal(receiverProto().service.ApplyStream.requestSerialize, generated, "the server's definition keeps the generated functions");
    assert.equal(ctor.service.ApplyStream.requestDeserialize, decode);
  } finally {
    client.close();
  }
});

test('with recycling, a DATA message is written into memory given back after its write, and only once per request', () => {
  const serialize = applyStreamSerializer(generated, true);
  const req = (n: number): ApplyStreamRequest => ({
    kind: 'data',
    data: { offsetBytes: n * 4096, lengthBytes: 4096, payload: Buffer.alloc(100 + n, n), encoding: 'ENCODING_ZSTD', checksum: Buffer.alloc(32, 9) },
  });
  const before = keptMessageBuffers();
  const a = req(1);
  const bytesA = serialize(a);
  assert.deepEqual(decode(bytesA), decode(generated(a)));
  const memory = bytesA.buffer;
  releaseSerialized(a);
  releaseSerialized(a); // twice: kept once
  const unmap: ApplyStreamRequest = { kind: 'unmap', unmap: { offsetBytes: 0, lengthBytes: 4096 } };
  serialize(unmap);
  releaseSerialized(unmap); // not serialized into recycled memory: ignored
  assert.equal(keptMessageBuffers(), before + 1);
  const b = req(2);
  const bytesB = serialize(b);
  assert.equal(bytesB.buffer, memory, 'the same memory again');
  assert.deepEqual(decode(bytesB), decode(generated(b)));
  assert.equal(keptMessageBuffers(), before);
  releaseSerialized(b);
});
