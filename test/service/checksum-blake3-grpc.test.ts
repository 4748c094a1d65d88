/**
 * BLAKE3 per-DATA checksums over real gRPC (in-process receiver, mTLS on
 * 127.0.0.1, real files): the default send uses BLAKE3 and the receiver
 * records it; sha256 stays selectable; a resumed transfer keeps the algorithm
 * it began with; and the hostile cases: a corrupted payload under BLAKE3 is
 * refused (DATA_LOSS) naming the record's offset with nothing of it written,
 * and a Begin with an algorithm value the receiver does not know is refused
 * (INVALID_ARGUMENT) naming the field.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { expectedImage } from '../helpers/offline-image.js';
import { errorInfoOf } from '../../src/rpc/status.js';
import { dataChecksum } from '../../src/stream/digest.js';
import { makeTestCerts, assertSameImage, readImage, type TestCerts } from './helpers.js';
import { startTestReceiver, rawCall, beginMsg, dataMsg, grpcError, waitFor, sendDemo, interruptedSend, type TestReceiver } from './receiver-helpers.js';

let dir: string;
let shared: string;
let pool: DemoPool;
let img1: Buffer;
let certs: TestCerts;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-blake3-'));
  shared = join(dir, 'shared');
  mkdirSync(shared);
  pool = await createDemoPool(join(dir, 'pool'));
  img1 = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
  certs = await makeTestCerts(join(dir, 'certs'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

function rx(name: string): Promise<TestReceiver> {
  return startTestReceiver(
    certs,
    { stateDir: join(dir, `state-${name}`), checkpointIntervalBytes: 2 * 1024 * 1024, identities: { 'sender-a': { directories: [shared] } } },
    join(dir, `${name}.json`),
  );
}

const code = (e: grpc.ServiceError) => errorInfoOf(e.metadata)?.reason;
const b3 = (b: Buffer) => dataChecksum(b, 'blake3');

test('a default send uses BLAKE3 end to end; --checksum sha256 still works; the receiver reports each transfer with its algorithm', async () => {
  const r = await rx('default');
  try {
    const a = await r.client(certs.clientA);
    const t1 = join(shared, 'default-b3.img');
    const res = await sendDemo(pool, a, t1, pool.baseDevId, { transferId: 'b3-default' });
    assert.equal(res.checksum, 'blake3');
    assert.equal(res.state.checksum, 'CHECKSUM_ALGORITHM_BLAKE3');
    assertSameImage(readImage(t1, pool.volumeSizeBytes), img1, 'BLAKE3 transfer');
    const t2 = join(shared, 'default-sha.img');
    const res2 = await sendDemo(pool, a, t2, pool.baseDevId, { transferId: 'sha-explicit', checksum: 'sha256' });
    assert.equal(res2.checksum, 'sha256');
    assert.equal((await a.getTransferState('sha-explicit'))?.checksum, 'CHECKSUM_ALGORITHM_SHA256');
    assertSameImage(readImage(t2, pool.volumeSizeBytes), img1, 'sha256 transfer');
    // The stream digest is the sha256 chain either way, fed different per-DATA checksums: different values.
    assert.notDeepEqual(res.digest, res2.digest);
  } finally {
    await r.close();
  }
});

test('a resumed transfer keeps the algorithm it began with (TransferState.checksum), whatever the resuming sender would choose', async () => {
  const r = await rx('resume');
  try {
    const a = await r.client(certs.clientA);
    const target = join(shared, 'resume.img');
    await interruptedSend(pool, a, target, pool.baseDevId, 8 * 1024 * 1024, 'b3-resume');
    await waitFor(async () => (await a.getTransferState('b3-resume'))?.active === false, 'b3-resume to stop');
    const st = await a.getTransferState('b3-resume');
    assert.equal(st?.checksum, 'CHECKSUM_ALGORITHM_BLAKE3');
    assert.ok((st?.durableOffsetBytes ?? 0) > 0, 'something was checkpointed');
    const res = await sendDemo(pool, a, target, pool.baseDevId, { transferId: 'b3-resume', checksum: 'sha256' });
    assert.equal(res.checksum, 'blake3', 'resumed with the algorithm of the transfer, not the one asked for a new one');
    assert.ok(res.startOffsets[0]! > 0, `resumed above 0: ${JSON.stringify(res.startOffsets)}`);
    assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after the resume');
  } finally {
    await r.close();
  }
});

test('hostile: a corrupted payload under BLAKE3 is DATA_LOSS naming the record and its offset, and nothing of the transfer reaches the target', async () => {
  const r = await rx('corrupt');
  try {
    const a = await r.client(certs.clientA);
    const target = join(shared, 'corrupt.img');
    const c = rawCall(a);
    const good = Buffer.alloc(64 * 1024, 0x11);
    const sent = Buffer.from(good);
    sent[1000] = 0x12; // one byte changed in flight
    c.write(beginMsg('b3-corrupt', target, { checksum: 'CHECKSUM_ALGORITHM_BLAKE3', compression: 'COMPRESSION_NONE' }));
    c.write(dataMsg(0, good, { checksum: b3(good) }));
    c.write(dataMsg(128 * 1024, sent, { checksum: b3(good) }));
    c.call.end();
    const e = await grpcError(c.response);
    assert.equal(e.code, grpc.status.DATA_LOSS, e.message);
    assert.equal(code(e), 'CHECKSUM_MISMATCH');
    assert.match(
      e.details,
      /data record at volume offset 131072: checksum mismatch over 65536 bytes \(blake3: sender [0-9a-f]{16}…, data [0-9a-f]{16}…\); not written/,
    );
    assert.equal(errorInfoOf(e.metadata)?.metadata.volumeOffsetBytes, '131072');
    // A full stream reaches the target only at its commit (issue 13): the target holds nothing of it.
    if (existsSync(target))
      assert.equal(
        readImage(target, 1024 * 1024).some((x) => x !== 0),
        false,
        'the target is still all zeros',
      );
  } finally {
    await r.close();
  }
});

test('hostile: a Begin whose checksum is a value this receiver does not know is INVALID_ARGUMENT naming the field and the known values', async () => {
  const r = await rx('unknown');
  try {
    const a = await r.client(certs.clientA);
    const c = rawCall(a);
    c.write(beginMsg('b3-unknown', join(shared, 'unknown.img'), { checksum: 9 }));
    c.call.end();
    const e = await grpcError(c.response);
    assert.equal(e.code, grpc.status.INVALID_ARGUMENT, e.message);
    assert.equal(code(e), 'BAD_STREAM');
    assert.match(e.details, /begin: checksum 9 is not one of CHECKSUM_ALGORITHM_NONE, CHECKSUM_ALGORITHM_SHA256, CHECKSUM_ALGORITHM_BLAKE3/);
    assert.equal(await a.getTransferState('b3-unknown'), undefined, 'nothing was stored');
  } finally {
    await r.close();
  }
});
