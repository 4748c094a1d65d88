/**
 * The server's hand-written ApplyStream decoder (rpc/apply-request-decode.ts)
 * over real gRPC (mTLS on 127.0.0.1, a real file target): a client that
 * writes raw bytes gets hostile Data messages refused as BAD_STREAM naming
 * the field and the byte offset (not grpc-js's bare INTERNAL "Error
 * deserializing request"), nothing is written, and a well-formed stream of
 * the same shape still applies.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { receiverProto, type ApplyStreamRequest } from '../../src/rpc/proto.js';
import { errorInfoOf } from '../../src/rpc/status.js';
import { makeTestCerts, type TestCerts } from './helpers.js';
import { startTestReceiver, beginMsg, dataMsg, sha, type TestReceiver } from './receiver-helpers.js';
import { StreamDigest } from '../../src/stream/digest.js';

let dir: string;
let shared: string;
let certs: TestCerts;
let r: TestReceiver;
const VOLUME = 256 * 1024;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-applydecode-'));
  shared = join(dir, 'shared');
  mkdirSync(shared);
  certs = await makeTestCerts(join(dir, 'certs'));
  r = await startTestReceiver(certs, { stateDir: join(dir, 'state'), identities: { 'sender-a': { directories: [shared] } } }, join(dir, 'rx.json'));
});

after(async () => {
  await r?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One ApplyStream call whose messages are the bytes given (no serializer of ours in between). */
async function rawBytesCall(messages: Buffer[]): Promise<{ error?: grpc.ServiceError }> {
  const tls = certs.clientA;
  const creds = grpc.credentials.createSsl(readFileSync(tls.ca), readFileSync(tls.key), readFileSync(tls.cert));
  const client = new grpc.Client(r.address, creds, { 'grpc.ssl_target_name_override': 'localhost' });
  try {
    return await new Promise((resolve) => {
      const call = client.makeClientStreamRequest<Buffer, Buffer>(
        '/thinship.v1.ReceiverService/ApplyStream',
        (b) => b,
        (b) => b,
        (e) => resolve(e ? { error: e } : {}),
      );
      for (const m of messages) call.write(m);
      call.end();
    });
  } finally {
    client.close();
  }
}

const serialize = (m: ApplyStreamRequest) => receiverProto().service.ApplyStream.requestSerialize(m);

test('hostile Data bytes over gRPC: BAD_STREAM naming the field and byte offset, nothing written', async () => {
  const target = join(shared, 'hostile.img');
  const begin = serialize(beginMsg('hostile-1', target, { volumeSizeBytes: VOLUME }));
  // data { offset_bytes: 2^53 } : 0x12 len 0x08 varint(2^53)
  const bigOffset = Buffer.from([0x12, 0x09, 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
  const cases: [string, Buffer, RegExp][] = [
    ['offset above 2^53', bigOffset, /data\.offset_bytes \(field 1\) at byte 3: 9007199254740992 is above 2\^53 - 1/],
    ['payload past the end', Buffer.from([0x12, 0x04, 0x1a, 0x7f, 0x01, 0x02]), /data\.payload \(field 3\) at byte 3: length 127 runs past the end/],
    ['payload as a varint', Buffer.from([0x12, 0x02, 0x18, 0x05]), /data\.payload \(field 3\) at byte 2: varint, expected length-delimited/],
  ];
  for (const [what, bytes, re] of cases) {
    const { error } = await rawBytesCall([begin, bytes]);
    assert.ok(error, `${what}: refused`);
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT, `${what}: ${error.details}`);
    assert.equal(errorInfoOf(error.metadata)?.reason, 'BAD_STREAM', what);
    assert.match(error.details, re, what);
  }
  // The transfer began (the file exists, sparse) but no record was written.
  if (existsSync(target)) assert.ok(readFileSync(target).every((x) => x === 0));
});

test('a stream of raw-written messages of the same shape applies', async () => {
  const target = join(shared, 'good.img');
  const payload = Buffer.alloc(65536, 7);
  const digest = new StreamDigest();
  digest.addData(65536, payload.length, sha(payload));
  const { error } = await rawBytesCall([
    serialize(beginMsg('good-1', target, { volumeSizeBytes: VOLUME })),
    serialize(dataMsg(65536, payload)),
    serialize({ kind: 'end', end: { records: 3, dataRecords: 1, unmapRecords: 0, dataBytes: 65536, unmapBytes: 0, digest: digest.state } }),
  ]);
  assert.equal(error, undefined, error?.details);
  const img = readFileSync(target);
  assert.equal(img.length, VOLUME);
  assert.ok(img.subarray(65536, 131072).equals(payload));
  assert.ok(img.subarray(0, 65536).every((x) => x === 0));
});
