/**
 * The receiver's state against an authenticated but hostile client, with an
 * in-process receiver (real mTLS on 127.0.0.1, real files): every Begin
 * field checked before anything is stored; unusable or edited checkpoint
 * files quarantined, never fatal, never used; transfer ids scoped by
 * identity; a resume refused when the target changed under the transfer;
 * silent and trickling calls ended (checkpointed); per-identity caps; state
 * on disk stays small.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, readdirSync, statSync, openSync, writeSync, closeSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { expectedImage } from '../helpers/offline-image.js';
import { checkpointFileName } from '../../src/receiver/checkpoint.js';
import { errorInfoOf } from '../../src/rpc/status.js';
import { makeTestCerts, assertSameImage, readImage, type TestCerts } from './helpers.js';
import {
  startTestReceiver,
  rawCall,
  beginMsg,
  dataMsg,
  grpcError,
  rejects,
  waitFor,
  sendDemo,
  interruptedSend,
  sha,
  type TestReceiver,
} from './receiver-helpers.js';

let dir: string;
let shared: string;
let pool: DemoPool;
let img1: Buffer;
let certs: TestCerts;
const CHECKPOINT_BYTES = 2 * 1024 * 1024;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-rstate-'));
  shared = join(dir, 'shared');
  mkdirSync(shared);
  pool = await createDemoPool(join(dir, 'pool'));
  img1 = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
  certs = await makeTestCerts(join(dir, 'certs'));
});

after(() => rmSync(dir, { recursive: true, force: true }));

/** Both identities may write the shared directory (so they can meet on one target). */
function cfg(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    stateDir: join(dir, `state-${name}`),
    checkpointIntervalBytes: CHECKPOINT_BYTES,
    identities: { 'sender-a': { directories: [shared] }, 'sender-b': { directories: [shared] } },
    ...extra,
  };
}

function rx(name: string, extra: Record<string, unknown> = {}): Promise<TestReceiver> {
  return startTestReceiver(certs, cfg(name, extra), join(dir, `${name}.json`));
}

const transfersDir = (name: string) => join(dir, `state-${name}`, 'transfers');
const jsonFiles = (name: string) => readdirSync(transfersDir(name)).filter((f) => f.endsWith('.json'));
/** The stable code, as any client reads it: ErrorInfo.reason in the grpc-status-details-bin trailer. */
const code = (e: grpc.ServiceError) => errorInfoOf(e.metadata)?.reason;

test('every Begin field is checked before anything is stored: refused naming the field, nothing on disk, the receiver restarts', async () => {
  const r = await rx('begin', { maxVolumeBytes: 1024 ** 4 });
  const a = await r.client(certs.clientA);
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['huge-block', { blockSizeBytes: 2 ** 53 }, /block_size_bytes 9007199254740992/],
    ['small-block', { blockSizeBytes: 4096 }, /block_size_bytes 4096 must be 0 \(not given\) or a dm-thin block size/],
    ['odd-block', { blockSizeBytes: 65536 * 3 + 512 }, /block_size_bytes/],
    ['big-volume', { volumeSizeBytes: 1024 ** 4 + 1 }, /volume_size_bytes 1099511627777 is more than this receiver's maxVolumeBytes 1099511627776/],
    ['long-source', { sourceId: 's'.repeat(257) }, /source_id is 257 bytes, more than 256/],
    ['huge-source', { sourceId: 'x'.repeat(3 * 1024 * 1024) }, /source_id is 3145728 bytes/],
    ['long-base', { mode: 'TRANSFER_MODE_INCREMENTAL', baseId: 'é'.repeat(129) }, /base_id is 258 bytes/],
    ['planned', { plannedDataBytes: 1024 * 1024 + 1 }, /planned_data_bytes 1048577 must be 0 to volume_size_bytes/],
    ['planned-sum', { plannedDataBytes: 600 * 1024, plannedUnmapBytes: 600 * 1024 }, /planned_data_bytes \+ planned_unmap_bytes/],
    ['resume', { resumeOffsetBytes: 1024 * 1024 + 1 }, /resume_offset_bytes 1048577 is outside the volume/],
    ['long-target', { target: `${shared}/${'t'.repeat(4100)}` }, /target must be 1 to 4096 bytes/],
  ];
  for (const [id, over, re] of cases) {
    const c = rawCall(a);
    c.write(beginMsg(id, join(shared, `${id}.img`), over));
    c.call.end();
    const e = await grpcError(c.response);
    assert.equal(e.code, grpc.status.INVALID_ARGUMENT, `${id}: ${grpc.status[e.code]} ${e.details}`);
    assert.equal(code(e), 'BAD_STREAM', id);
    assert.match(e.details, re, id);
    assert.equal(existsSync(join(shared, `${id}.img`)), false, `${id}: target not created`);
  }
  // a block size that dm-thin allows and 0 (not given) are accepted
  for (const [id, bs] of [
    ['bs-0', 0],
    ['bs-192k', 3 * 65536],
    ['bs-1g', 1024 ** 3],
  ] as const) {
    const c = rawCall(a);
    c.write(beginMsg(id, join(shared, `${id}.img`), { blockSizeBytes: bs }));
    await waitFor(async () => (await a.getTransferState(id))?.active === true, `${id} to begin`);
    c.call.cancel();
    await waitFor(async () => (await a.getTransferState(id))?.active === false, `${id} to stop`);
  }
  assert.equal(jsonFiles('begin').length, 3, 'only the accepted begins are stored');
  await r.close();
  // the state the accepted begins left loads again
  const r2 = await rx('begin');
  const a2 = await r2.client(certs.clientA);
  assert.equal((await a2.getTransferState('bs-1g'))?.status, 'TRANSFER_STATUS_IN_PROGRESS');
  await r2.close();
});

test('unusable checkpoint files are quarantined with a warning naming them; the receiver starts and the rest load', async () => {
  const r = await rx('junk');
  const a = await r.client(certs.clientA);
  const c = rawCall(a);
  c.write(beginMsg('good-1', join(shared, 'junk-good.img')));
  await waitFor(async () => (await a.getTransferState('good-1'))?.active === true, 'good-1 to begin');
  c.call.cancel();
  await waitFor(async () => (await a.getTransferState('good-1'))?.active === false, 'good-1 to stop');
  await r.close();
  const t = transfersDir('junk');
  const good = checkpointFileName('sender-a', 'good-1');
  const text = readFileSync(join(t, good), 'utf8');
  writeFileSync(join(t, 'truncated.json'), text.slice(0, text.length / 2));
  writeFileSync(join(t, 'garbage.json'), Buffer.from([0xff, 0xfe, 0x00, 0x01]));
  writeFileSync(join(t, 'unrelated.json'), JSON.stringify({ hello: 'world' }));
  writeFileSync(join(t, 'array.json'), '[1,2,3]');
  mkdirSync(join(t, 'dir.json'));
  const r2 = await rx('junk');
  try {
    const a2 = await r2.client(certs.clientA);
    assert.equal((await a2.getTransferState('good-1'))?.status, 'TRANSFER_STATUS_IN_PROGRESS', 'the good checkpoint still loads');
    for (const f of ['truncated.json', 'garbage.json', 'unrelated.json', 'array.json', 'dir.json']) {
      const w = r2.lines.find((l) => l.level === 'warn' && typeof l.file === 'string' && l.file.endsWith(`/${f}`));
      assert.ok(w, `a warning names ${f}`);
      assert.match(String(w.msg), /quarantine/);
      assert.equal(existsSync(join(t, f)), false, `${f} moved aside`);
    }
    assert.equal(readdirSync(join(t, 'quarantine')).length, 5);
    assert.deepEqual(jsonFiles('junk'), [good]);
  } finally {
    await r2.close();
  }
});

test('an edited checkpoint (durable offset, status) is never used: quarantined, and the transfer starts over byte-exact', async () => {
  for (const [edit, change] of [
    [
      'offset',
      (v: Record<string, unknown>) => {
        v.durableOffsetBytes = (v.durableOffsetBytes as number) + 65536;
      },
    ],
    [
      'status',
      (v: Record<string, unknown>) => {
        v.status = 'complete';
      },
    ],
  ] as const) {
    const name = `edit-${edit}`;
    const target = join(shared, `${name}.img`);
    let r = await rx(name);
    let a = await r.client(certs.clientA);
    await interruptedSend(pool, a, target, pool.baseDevId, 8 * 1024 * 1024, name);
    await waitFor(async () => (await a.getTransferState(name))?.active === false, `${name} to stop`);
    const before = (await a.getTransferState(name))!;
    assert.ok(before.durableOffsetBytes > 0);
    await r.close();
    const f = join(transfersDir(name), checkpointFileName('sender-a', name));
    const v = JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown>;
    change(v);
    writeFileSync(f, JSON.stringify(v, null, 1));
    r = await rx(name);
    try {
      a = await r.client(certs.clientA);
      assert.ok(
        r.lines.some((l) => l.level === 'warn' && l.file === f && /mac\) mismatch/.test(String(l.reason))),
        `warned about ${f}`,
      );
      assert.equal(await a.getTransferState(name), undefined, 'the edited checkpoint is not used');
      const res = await sendDemo(pool, a, target, pool.baseDevId, { transferId: name });
      assert.equal(res.alreadyComplete, false);
      assert.equal(res.startOffsets[0], 0, 'started over');
      assertSameImage(readImage(target, pool.volumeSizeBytes), img1, name);
    } finally {
      await r.close();
    }
  }
});

test('a format-1 checkpoint is migrated on the first start with checksums, and quarantined once checkpoints are checksummed', async () => {
  const legacy = (id: string) => ({
    format: 1,
    transferId: id,
    status: 'in_progress',
    identity: 'sender-a',
    target: join(shared, `${id}.img`),
    targetKey: join(shared, `${id}.img`),
    mode: 'full',
    sourceId: 's',
    baseId: '',
    volumeSizeBytes: 1048576,
    blockSizeBytes: 65536,
    checksum: 'sha256',
    durableOffsetBytes: 0,
    digestState: '0'.repeat(64),
    dataRecords: 0,
    unmapRecords: 0,
    dataBytes: 0,
    unmapBytes: 0,
    createdUnixMs: Date.now(),
    updatedUnixMs: Date.now(),
  });
  mkdirSync(transfersDir('legacy'), { recursive: true });
  writeFileSync(join(transfersDir('legacy'), 'old-1.json'), JSON.stringify(legacy('old-1')));
  let r = await rx('legacy');
  let a = await r.client(certs.clientA);
  assert.equal((await a.getTransferState('old-1'))?.status, 'TRANSFER_STATUS_IN_PROGRESS', 'migrated');
  assert.deepEqual(jsonFiles('legacy'), [checkpointFileName('sender-a', 'old-1')]);
  await r.close();
  writeFileSync(join(transfersDir('legacy'), 'old-2.json'), JSON.stringify(legacy('old-2')));
  r = await rx('legacy');
  try {
    a = await r.client(certs.clientA);
    assert.equal(await a.getTransferState('old-2'), undefined);
    assert.ok(r.lines.some((l) => l.level === 'warn' && /format 1/.test(String(l.reason))));
    assert.equal((await a.getTransferState('old-1'))?.status, 'TRANSFER_STATUS_IN_PROGRESS');
  } finally {
    await r.close();
  }
});

test('transfer ids are per identity: no takeover, no lock-out, no peeking across identities', async () => {
  const r = await rx('ids');
  try {
    const a = await r.client(certs.clientA);
    const b = await r.client(certs.clientB);
    // a runs "same-id"; b begins "same-id" (another target): its own transfer, a's call is not taken over
    const ca = rawCall(a);
    ca.write(beginMsg('same-id', join(shared, 'ids-a.img')));
    ca.write(dataMsg(0, Buffer.alloc(65536, 1)));
    await waitFor(async () => (await a.getTransferState('same-id'))?.active === true, 'a to begin');
    let aEnded = false;
    void ca.response
      .catch(() => undefined)
      .finally(() => {
        aEnded = true;
      });
    for (let i = 0; i < 5; i++) {
      const cb = rawCall(b);
      cb.write(beginMsg('same-id', join(shared, 'ids-b.img')));
      await waitFor(async () => (await b.getTransferState('same-id'))?.active === true, 'b to begin');
      cb.call.cancel();
      await waitFor(async () => (await b.getTransferState('same-id'))?.active === false, 'b to stop');
    }
    assert.equal(aEnded, false, "a's call was not taken over");
    const sa = (await a.getTransferState('same-id'))!;
    assert.equal(sa.active, true);
    assert.equal(sa.target, join(shared, 'ids-a.img'));
    assert.equal((await b.getTransferState('same-id'))!.target, join(shared, 'ids-b.img'));
    // b claimed "b-first" first: a may still use that id
    const cb2 = rawCall(b);
    cb2.write(beginMsg('b-first', join(shared, 'ids-b2.img')));
    await waitFor(async () => (await b.getTransferState('b-first'))?.active === true, 'b-first to begin');
    const ca2 = rawCall(a);
    ca2.write(beginMsg('b-first', join(shared, 'ids-a2.img')));
    await waitFor(async () => (await a.getTransferState('b-first'))?.active === true, "a's b-first to begin");
    // a target held by a's transfer: b hears "another transfer", not a's id
    const cb3 = rawCall(b);
    cb3.write(beginMsg('b-other', join(shared, 'ids-a.img')));
    cb3.call.end();
    const busy = await grpcError(cb3.response);
    assert.equal(code(busy), 'TRANSFER_BUSY');
    assert.match(busy.details, /in use by another transfer/);
    assert.doesNotMatch(busy.details, /same-id|sender-a|expires at/);
    // b cannot see or abort a's transfers
    const secret = rawCall(a);
    secret.write(beginMsg('secret-a-7', join(shared, 'ids-secret.img')));
    await waitFor(async () => (await a.getTransferState('secret-a-7'))?.active === true, 'secret to begin');
    assert.equal(await b.getTransferState('secret-a-7'), undefined);
    await rejects(b.abortTransfer('secret-a-7'), 'NOT_FOUND');
    assert.equal((await a.getTransferState('secret-a-7'))?.active, true, 'still running');
    for (const c of [ca, cb2, ca2, secret]) c.call.cancel();
    await waitFor(() => r.rx.registry.activeCount === 0, 'every call to end');
  } finally {
    await r.close();
  }
});

test('a resume is refused when the target changed under the transfer (the last applied record no longer reads back)', async () => {
  const r = await rx('changed');
  try {
    const a = await r.client(certs.clientA);
    const target = join(shared, 'changed.img');
    await interruptedSend(pool, a, target, pool.baseDevId, 8 * 1024 * 1024, 'changed-1');
    await waitFor(async () => (await a.getTransferState('changed-1'))?.active === false, 'changed-1 to stop');
    const cp = JSON.parse(readFileSync(join(transfersDir('changed'), checkpointFileName('sender-a', 'changed-1')), 'utf8')) as {
      lastData: { offsetBytes: number; lengthBytes: number };
    };
    assert.ok(cp.lastData && cp.lastData.lengthBytes > 0, `the checkpoint records the last DATA record: ${JSON.stringify(r.lines.slice(-8))}`);
    // someone else writes one byte inside that record: where the transfer wrote it, the staging file
    // beside the target (issue 13: a full stream reaches the target only at its commit)
    const staged = readdirSync(shared)
      .filter((n) => n.startsWith('.changed.img.thinship-staging-'))
      .map((n) => join(shared, n));
    assert.equal(staged.length, 1, 'one staging file');
    const fd = openSync(staged[0]!, 'r+');
    writeSync(
      fd,
      Buffer.from([0x5a ^ readFileSync(staged[0]!).subarray(cp.lastData.offsetBytes, cp.lastData.offsetBytes + 1)[0]!]),
      0,
      1,
      cp.lastData.offsetBytes,
    );
    closeSync(fd);
    await rejects(
      sendDemo(pool, a, target, pool.baseDevId, { transferId: 'changed-1', maxAttempts: 1 }),
      'RESUME_MISMATCH',
      /target changed since; the transfer must start over/,
    );
    await a.abortTransfer('changed-1', 'target changed');
    const res = await sendDemo(pool, a, target, pool.baseDevId, { transferId: 'changed-2' });
    assert.equal(res.startOffsets[0], 0);
    assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after starting over');
  } finally {
    await r.close();
  }
});

test('a silent call ends after idleTimeoutSeconds (retryable) and is checkpointed; so does a call that never sends its Begin', async () => {
  const r = await rx('idle', { idleTimeoutSeconds: 1 });
  try {
    const a = await r.client(certs.clientA);
    const c = rawCall(a);
    c.write(beginMsg('idle-1', join(shared, 'idle.img')));
    c.write(dataMsg(0, Buffer.alloc(65536, 9)));
    await waitFor(() => r.rx.registry.activeCount === 1, 'idle-1 to begin');
    const e = await grpcError(c.response);
    assert.equal(e.code, grpc.status.UNAVAILABLE);
    assert.match(e.details, /no message from the sender for 1 s \(idleTimeoutSeconds\)/);
    assert.equal(r.rx.registry.activeCount, 0);
    const st = (await a.getTransferState('idle-1'))!;
    assert.equal(st.status, 'TRANSFER_STATUS_IN_PROGRESS');
    assert.equal(st.durableOffsetBytes, 65536, 'checkpointed at the last applied record');
    const nb = rawCall(a); // no Begin at all
    const e2 = await grpcError(nb.response);
    assert.equal(e2.code, grpc.status.UNAVAILABLE);
    assert.match(e2.details, /no Begin from the sender within 1 s/);
  } finally {
    await r.close();
  }
});

test('a trickling call (below minBytesPerSecond over progressWindowSeconds of waiting) ends and is checkpointed', async () => {
  const r = await rx('slow', { idleTimeoutSeconds: 10, minBytesPerSecond: 1024 * 1024, progressWindowSeconds: 1 });
  try {
    const a = await r.client(certs.clientA);
    const c = rawCall(a);
    c.write(beginMsg('slow-1', join(shared, 'slow.img')));
    let off = 0;
    let ended = false;
    void c.response
      .catch(() => undefined)
      .finally(() => {
        ended = true;
      });
    // the attacker's pace: 4 KiB every 50 ms (80 KiB/s)
    const pace = setInterval(() => {
      if (!ended && off < 1024 * 1024) {
        c.write(dataMsg(off, Buffer.alloc(4096, 3)));
        off += 4096;
      }
    }, 50);
    try {
      const e = await grpcError(c.response);
      assert.equal(e.code, grpc.status.UNAVAILABLE);
      assert.match(e.details, /below this receiver's minBytesPerSecond 1048576/);
    } finally {
      clearInterval(pace);
    }
    const st = (await a.getTransferState('slow-1'))!;
    assert.equal(st.active, false);
    assert.ok(st.durableOffsetBytes > 0 && st.durableOffsetBytes % 4096 === 0, `checkpointed at ${st.durableOffsetBytes}`);
  } finally {
    await r.close();
  }
});

test("per-identity caps: running and stored transfers; refusals name the caller's own cap; state on disk stays small", async () => {
  const r = await rx('caps', { maxActiveTransfers: 4, maxActiveTransfersPerIdentity: 2, maxStoredTransfersPerIdentity: 3 });
  try {
    const a = await r.client(certs.clientA);
    const b = await r.client(certs.clientB);
    // the largest fields allowed, to measure what a stored transfer costs on disk
    const big = { sourceId: 's'.repeat(256) };
    const begin = (cl: typeof a, id: string) => {
      const c = rawCall(cl);
      c.write(beginMsg(id, join(shared, `${id}.img`), big));
      return c;
    };
    const a1 = begin(a, 'cap-a1');
    const a2 = begin(a, 'cap-a2');
    await waitFor(() => r.rx.registry.activeCount === 2, 'a1 and a2 to begin');
    const a3 = begin(a, 'cap-a3');
    a3.call.end();
    const e = await grpcError(a3.response);
    assert.equal(code(e), 'TRANSFER_BUSY');
    assert.match(e.details, /identity "sender-a" is already running 2 transfers .*maxActiveTransfersPerIdentity 2/);
    // b still gets in: a cannot take every slot
    const b1 = begin(b, 'cap-b1');
    await waitFor(async () => (await b.getTransferState('cap-b1'))?.active === true, 'b1 to begin');
    for (const c of [a1, a2, b1]) c.call.cancel();
    await waitFor(() => r.rx.registry.activeCount === 0, 'the calls to end');
    // a has 2 unfinished stored; a third is allowed, a fourth is not; resuming a stored one is
    const a4 = begin(a, 'cap-a4');
    await waitFor(async () => (await a.getTransferState('cap-a4'))?.active === true, 'a4 to begin');
    a4.call.cancel();
    await waitFor(() => r.rx.registry.activeCount === 0, 'a4 to end');
    const a5 = begin(a, 'cap-a5');
    a5.call.end();
    const e5 = await grpcError(a5.response);
    assert.equal(code(e5), 'TRANSFER_BUSY');
    assert.match(e5.details, /identity "sender-a" has 3 unfinished transfers stored .*maxStoredTransfersPerIdentity 3/);
    assert.equal(existsSync(join(shared, 'cap-a5.img')), false);
    const again = begin(a, 'cap-a1');
    await waitFor(async () => (await a.getTransferState('cap-a1'))?.active === true, 'a1 to resume');
    again.call.cancel();
    await waitFor(() => r.rx.registry.activeCount === 0, 'a1 to end');
    const files = jsonFiles('caps');
    assert.equal(files.length, 4, '3 of a, 1 of b');
    const total = files.reduce((n, f) => n + statSync(join(transfersDir('caps'), f)).size, 0);
    assert.ok(total < 4 * 2048, `state on disk: ${total} bytes for 4 transfers`);
  } finally {
    await r.close();
  }
});

test('completed transfers are remembered up to maxCompletedTransfersPerIdentity; the oldest are forgotten', async () => {
  const r = await rx('completed', { maxCompletedTransfersPerIdentity: 2 });
  try {
    const a = await r.client(certs.clientA);
    const { StreamDigest } = await import('../../src/stream/digest.js');
    for (const id of ['done-1', 'done-2', 'done-3']) {
      const c = rawCall(a);
      const data = Buffer.alloc(65536, 0x42);
      const d = new StreamDigest();
      d.addData(0, data.length, sha(data));
      c.write(beginMsg(id, join(shared, `${id}.img`), { volumeSizeBytes: 65536, plannedDataBytes: 65536 }));
      c.write(dataMsg(0, data));
      c.write({ kind: 'end', end: { records: 3, dataRecords: 1, unmapRecords: 0, dataBytes: 65536, unmapBytes: 0, digest: d.state } });
      c.call.end();
      assert.equal((await c.response).state?.status, 'TRANSFER_STATUS_COMPLETE');
    }
    assert.equal(await a.getTransferState('done-1'), undefined, 'the oldest is forgotten');
    assert.equal((await a.getTransferState('done-2'))?.status, 'TRANSFER_STATUS_COMPLETE');
    assert.equal((await a.getTransferState('done-3'))?.status, 'TRANSFER_STATUS_COMPLETE');
    assert.equal(jsonFiles('completed').length, 2);
  } finally {
    await r.close();
  }
});
