/**
 * Rules that protect data and access, each tested so that breaking the rule
 * fails a test (every test here was checked against the mutation it names:
 * docs/testing.md). The receiver's TransferRegistry runs on real files in a
 * temporary directory; the ZERO-chunk test runs the real gRPC sender and
 * receiver over loopback with mTLS.
 *
 * - access: a directory rule matches at a `/` boundary only
 * - ownership: another identity learns nothing about a transfer and changes nothing
 * - pipe mode: a record straddling the end of the target never grows it
 * - checkpoints: the durable offset saved never exceeds what was written and flushed
 * - memory: records already applied are garbage (no reaction chain keeps them alive)
 * - ZERO chunks count in the receiver's digest, and the target reads zeros there
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, readFileSync, statSync, existsSync, realpathSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { parseAccessRules, authorizeTarget, type AccessPolicy, type ClientIdentity } from '../../src/receiver/access.js';
import { TransferRegistry } from '../../src/receiver/transfers.js';
import type { TransferBegin, WireRecord } from '../../src/receiver/record-checks.js';
import { applyMessages } from '../../src/receiver/receiver.js';
import { openVolume, type VolumeHandle } from '../../src/device/volume.js';
import { StreamDigest } from '../../src/stream/digest.js';
import { checkpointFileName, type TransferCheckpoint } from '../../src/receiver/checkpoint.js';
import type { LinbitMessage } from '../../src/stream/linbit/format.js';
import { ThinshipError } from '../../src/errors.js';
import { createDemoPool } from '../../src/thin/demo-pool.js';
import { planSend } from '../../src/thin/planner.js';
import { openSourceReader } from '../../src/sender/volume-reader.js';
import { parseReceiverConfig } from '../../src/rpc/server-config.js';
import { startReceiver } from '../../src/rpc/server.js';
import { ReceiverClient, sendPlanOverGrpc } from '../../src/rpc/client.js';
import { expectedImage } from '../helpers/offline-image.js';
import { makeTestCerts, assertSameImage, readImage } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const silent = pino({ level: 'silent' });
const A: ClientIdentity = { name: 'ident-a', names: ['ident-a'] };
const B: ClientIdentity = { name: 'ident-b', names: ['ident-b'] };

let dir: string;
let allowed: string;
let policy: AccessPolicy;

before(async () => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'thinship-guards-')));
  allowed = join(dir, 'allowed');
  mkdirSync(allowed);
  mkdirSync(join(dir, 'allowed-evil'));
  // Both identities may write the same directory: only ownership keeps them apart.
  policy = await parseAccessRules({ 'ident-a': { directories: [allowed] }, 'ident-b': { directories: [allowed] } }, 'test');
});
after(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Buffer) => createHash('sha256').update(b).digest();

function begin(transferId: string, target: string, volumeSizeBytes: number, over: Partial<TransferBegin> = {}): TransferBegin {
  return {
    transferId,
    target,
    incremental: false,
    volumeSizeBytes,
    blockSizeBytes: 64 * KiB,
    sourceId: 'guard-source',
    baseId: '',
    plannedDataBytes: 0,
    plannedUnmapBytes: 0,
    resumeOffsetBytes: 0,
    compression: 'none',
    checksum: 'sha256',
    ...over,
  };
}

/** Data records of `chunkBytes` covering [fromBytes, toBytes), each chunk's bytes derived from its offset. */
function dataRecords(fromBytes: number, toBytes: number, chunkBytes: number): Extract<WireRecord, { type: 'data' }>[] {
  const out: Extract<WireRecord, { type: 'data' }>[] = [];
  for (let off = fromBytes; off < toBytes; off += chunkBytes) {
    const payload = Buffer.alloc(chunkBytes, ((off / chunkBytes) % 251) + 1);
    out.push({ type: 'data', offsetBytes: off, lengthBytes: chunkBytes, payload, encoding: 'raw', checksum: sha(payload) });
  }
  return out;
}

/** The end record for `records` (all of the transfer's data records), with an independently computed digest. */
function endRecord(records: Extract<WireRecord, { type: 'data' }>[]): WireRecord {
  const d = new StreamDigest();
  for (const r of records) d.addData(r.offsetBytes, r.lengthBytes, r.checksum);
  const dataBytes = records.reduce((s, r) => s + r.lengthBytes, 0);
  return { type: 'end', records: records.length + 2, dataRecords: records.length, unmapRecords: 0, dataBytes, unmapBytes: 0, digest: d.state };
}

async function* iterate<T>(items: T[], thenFail?: Error): AsyncGenerator<T> {
  for (const it of items) yield it;
  if (thenFail) throw thenFail;
}

async function registry(stateDir: string, over: Partial<ConstructorParameters<typeof TransferRegistry>[0]> = {}): Promise<TransferRegistry> {
  const r = new TransferRegistry({ stateDir: join(dir, stateDir), policy, log: silent, decodeWorkers: 0, ...over });
  await r.start();
  return r;
}

async function code(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    assert.ok(e instanceof ThinshipError, `a ThinshipError, got ${String(e)}`);
    return e.code;
  }
  assert.fail('expected a refusal');
}

// ---- access -------------------------------------------------------------------

test('a directory rule matches at a "/" boundary: /x/allowed does not allow /x/allowed-evil/...', async () => {
  writeFileSync(join(dir, 'allowed-evil', 'exists.img'), 'x');
  for (const t of [join(dir, 'allowed-evil', 'new.img'), join(dir, 'allowed-evil', 'exists.img'), `${allowed}x.img`]) {
    await assert.rejects(
      authorizeTarget(policy, A, t),
      (e: ThinshipError) => e.code === 'PERMISSION_DENIED' && /not under an allowed directory/.test(e.message),
      t,
    );
  }
  // the rule itself still works, for a file that exists and one that does not
  assert.equal((await authorizeTarget(policy, A, join(allowed, 'ok.img'))).kind, 'path');
  writeFileSync(join(allowed, 'there.img'), 'x');
  assert.equal((await authorizeTarget(policy, A, join(allowed, 'there.img'))).kind, 'path');
});

// ---- ownership ----------------------------------------------------------------

test('another identity can neither see, abort nor resume a transfer (it learns nothing, changes nothing)', async () => {
  const reg = await registry('state-own');
  try {
    const target = join(allowed, 'owned.img');
    const size = 1 * MiB;
    const recs = dataRecords(0, size, 64 * KiB);
    // A's stream breaks after half the records: a resumable checkpoint remains.
    await assert.rejects(reg.apply(A, begin('own-1', target, size), iterate(recs.slice(0, 8), new ThinshipError('UNAVAILABLE', 'sender went away'))));
    const st = await reg.state(A, 'own-1');
    assert.equal(st.status, 'in_progress');
    assert.equal(st.durableOffsetBytes, 8 * 64 * KiB);
    const cpFile = join(dir, 'state-own', 'transfers', checkpointFileName(A.name, 'own-1'));
    const cpBefore = readFileSync(cpFile, 'utf8');
    const imgBefore = readFileSync(target);
    const mtimeBefore = statSync(target).mtimeMs;

    const refused = ['NOT_FOUND', 'PERMISSION_DENIED'];
    // query: refused, and the answer does not carry the transfer's target or progress
    let msg = '';
    try {
      await reg.state(B, 'own-1');
    } catch (e) {
      msg = (e as Error).message;
      assert.ok(refused.includes((e as ThinshipError).code), (e as Error).message);
    }
    assert.notEqual(msg, '', "B querying A's transfer is refused");
    assert.ok(!msg.includes(target) && !msg.includes(String(st.durableOffsetBytes)), `B learns nothing: ${msg}`);
    // list: A sees its transfer, B sees none of A's
    assert.deepEqual(
      reg.list(A).map((t) => t.transferId),
      ['own-1'],
    );
    assert.deepEqual(reg.list(B), [], "B's list does not show A's transfer");
    // abort: refused, A's checkpoint stays
    assert.ok(refused.includes(await code(reg.abort(B, 'own-1', 'hostile'))));
    // resume with A's id at A's durable offset, and from scratch: refused, nothing written
    const resumeCode = await code(
      reg.apply(
        B,
        begin('own-1', target, size, { resumeOffsetBytes: st.durableOffsetBytes }),
        iterate([...recs.slice(8).map((r) => ({ ...r, payload: Buffer.alloc(r.lengthBytes, 0x66), checksum: sha(Buffer.alloc(r.lengthBytes, 0x66)) }))]),
      ),
    );
    assert.ok([...refused, 'RESUME_MISMATCH', 'TRANSFER_BUSY'].includes(resumeCode), resumeCode);
    assert.ok(['PERMISSION_DENIED', 'TRANSFER_BUSY'].includes(await code(reg.apply(B, begin('own-1', target, size), iterate(recs)))));

    assert.equal(readFileSync(cpFile, 'utf8'), cpBefore, "A's checkpoint unchanged");
    assert.ok(readFileSync(target).equals(imgBefore), 'target unchanged');
    assert.equal(statSync(target).mtimeMs, mtimeBefore, 'target not even written');
    const stAfter = await reg.state(A, 'own-1');
    assert.equal(stAfter.durableOffsetBytes, st.durableOffsetBytes);
    assert.equal(stAfter.active, false);
    // A still resumes and completes
    const done = await reg.apply(A, begin('own-1', target, size, { resumeOffsetBytes: st.durableOffsetBytes }), iterate([...recs.slice(8), endRecord(recs)]));
    assert.equal(done.state.status, 'complete');
    // ...and only A can abort it
    assert.ok(refused.includes(await code(reg.abort(B, 'own-1', 'hostile'))));
    assert.equal((await reg.state(A, 'own-1')).status, 'complete');
    await reg.abort(A, 'own-1', 'owner');
    assert.equal(existsSync(cpFile), false);
  } finally {
    await reg.close();
  }
});

// ---- pipe mode bounds -----------------------------------------------------------

test('pipe mode: a record straddling the end of the target is refused and the file does not grow', async () => {
  const path = join(dir, 'pipe-8m.img');
  writeFileSync(path, Buffer.alloc(8 * MiB, 0x11));
  const h = await openVolume(path, { mode: 'write' });
  try {
    // a plain LINBIT stream: no volume size in the begin, so only the target's size bounds the records
    const msgs: LinbitMessage[] = [
      { type: 'begin', info: { formatVersion: '1.0' } },
      { type: 'data', offsetBytes: 8 * MiB - 64 * KiB, data: Buffer.alloc(320 * KiB, 0x22) },
      { type: 'end', records: 3, dataRecords: 1, unmapRecords: 0, dataBytes: 320 * KiB, unmapBytes: 0, digest: Buffer.alloc(0) },
    ];
    await assert.rejects(applyMessages(iterate(msgs), h), (e: ThinshipError) => e.code === 'BAD_STREAM' && /beyond the target/.test(e.message));
    await assert.rejects(
      applyMessages(iterate([msgs[0]!, { type: 'unmap', offsetBytes: 8 * MiB - 4096, lengthBytes: 8192 }, msgs[2]!]), h),
      (e: ThinshipError) => e.code === 'BAD_STREAM',
    );
  } finally {
    await h.close();
  }
  assert.equal(statSync(path).size, 8 * MiB, 'the file did not grow');
  assert.ok(readFileSync(path).equals(Buffer.alloc(8 * MiB, 0x11)), 'nothing written');
});

// ---- checkpoints ----------------------------------------------------------------

/** Wraps the handle the registry opens: records how far writes reached, and how far the last flush covered. */
function spyOnTargets(reg: TransferRegistry) {
  const seen = { writtenEndBytes: 0, flushedEndBytes: 0, flushes: 0 };
  const r = reg as unknown as { openTarget: (...a: unknown[]) => Promise<{ handle: VolumeHandle; release: () => Promise<void> }> };
  const open = r.openTarget.bind(reg);
  const watch = (h: VolumeHandle) => {
    const writeAt = h.writeAt.bind(h);
    const makeZero = h.makeZero.bind(h);
    const flush = h.flush.bind(h);
    h.writeAt = async (buf: Uint8Array, off: number) => {
      await writeAt(buf, off);
      seen.writtenEndBytes = Math.max(seen.writtenEndBytes, off + buf.length);
    };
    h.makeZero = async (off: number, len: number) => {
      await makeZero(off, len);
      seen.writtenEndBytes = Math.max(seen.writtenEndBytes, off + len);
    };
    h.flush = async () => {
      const covered = seen.writtenEndBytes;
      await flush();
      seen.flushedEndBytes = covered;
      seen.flushes++;
    };
  };
  r.openTarget = async (...a: unknown[]) => {
    const o = await open(...a);
    watch(o.handle);
    return o;
  };
  // Issue 13: a file target's records are written to its staging file (or through its undo journal): watch that handle too.
  const rs = reg as unknown as { openStage: (...a: unknown[]) => Promise<{ handle: VolumeHandle }> };
  const openStage = rs.openStage.bind(reg);
  rs.openStage = async (...a: unknown[]) => {
    const st = await openStage(...a);
    if (st.handle !== a[1]) watch(st.handle); // the journal writes through the target handle, already watched
    return st;
  };
  const saves: { cp: TransferCheckpoint; flushedEndBytes: number; writtenEndBytes: number }[] = [];
  const save = reg.store.save.bind(reg.store);
  reg.store.save = async (cp: TransferCheckpoint) => {
    saves.push({ cp, flushedEndBytes: seen.flushedEndBytes, writtenEndBytes: seen.writtenEndBytes });
    await save(cp);
  };
  return { seen, saves };
}

test('interval checkpoints: the durable offset saved never exceeds the last flushed record, and its digest and counts are those of the records below it', async () => {
  const reg = await registry('state-ckpt', { checkpointIntervalBytes: 128 * KiB });
  const { saves } = spyOnTargets(reg);
  try {
    const size = 4 * MiB;
    const recs = dataRecords(0, size, 64 * KiB);
    const r = await reg.apply(A, begin('ckpt-1', join(allowed, 'ckpt.img'), size), iterate([...recs, endRecord(recs)]));
    assert.equal(r.state.status, 'complete');
  } finally {
    await reg.close();
  }
  const interval = saves.filter((s) => s.cp.status === 'in_progress' && s.cp.durableOffsetBytes > 0);
  assert.ok(interval.length >= 10, `interval checkpoints taken: ${interval.length}`);
  for (const s of interval) {
    const at = s.cp.durableOffsetBytes;
    assert.ok(at <= s.flushedEndBytes, `checkpoint at ${at} but the target was flushed only up to ${s.flushedEndBytes} (written up to ${s.writtenEndBytes})`);
    // the checkpoint describes exactly the records below its offset
    const below = dataRecords(0, at, 64 * KiB);
    const d = new StreamDigest();
    for (const x of below) d.addData(x.offsetBytes, x.lengthBytes, x.checksum);
    assert.equal(s.cp.digestState, d.state.toString('hex'), `digest at ${at}`);
    assert.equal(s.cp.dataBytes, at);
    assert.equal(s.cp.dataRecords, below.length);
  }
});

test('a broken stream checkpoints only what was flushed; the resume completes byte-exact', async () => {
  const reg = await registry('state-break', { checkpointIntervalBytes: 256 * KiB });
  const { saves } = spyOnTargets(reg);
  const target = join(allowed, 'break.img');
  const size = 2 * MiB;
  const recs = dataRecords(0, size, 64 * KiB);
  try {
    await assert.rejects(reg.apply(A, begin('brk-1', target, size), iterate(recs.slice(0, 13), new ThinshipError('UNAVAILABLE', 'gone'))));
    const st = await reg.state(A, 'brk-1');
    assert.equal(st.durableOffsetBytes, 13 * 64 * KiB, 'the last applied record');
    for (const s of saves)
      assert.ok(s.cp.durableOffsetBytes <= s.flushedEndBytes, `checkpoint at ${s.cp.durableOffsetBytes}, flushed up to ${s.flushedEndBytes}`);
    await reg.apply(A, begin('brk-1', target, size, { resumeOffsetBytes: st.durableOffsetBytes }), iterate([...recs.slice(13), endRecord(recs)]));
    assert.ok(readFileSync(target).equals(Buffer.concat(recs.map((r) => r.payload))), 'byte-exact after the resume');
  } finally {
    await reg.close();
  }
});

// ---- memory ----------------------------------------------------------------------

test('records already applied are garbage: nothing (such as one long-lived abort promise) keeps them alive', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const reg = await registry('state-mem');
  const refs: WeakRef<object>[] = [];
  const recs = dataRecords(0, 8 * MiB, 128 * KiB);
  let aliveEarly = -1;
  async function* source(): AsyncGenerator<WireRecord> {
    for (const [i, r] of recs.entries()) {
      // a fresh object per record, held only by the registry once yielded
      const rec: WireRecord = { ...r, payload: Buffer.from(r.payload) };
      refs.push(new WeakRef(rec));
      yield rec;
      if (i === recs.length - 1) {
        for (let k = 0; k < 3; k++) await new Promise((res) => setImmediate(res));
        gc();
        // the first half was applied long ago (only DECODE_AHEAD_RECORDS are ahead of the write)
        aliveEarly = refs.slice(0, recs.length / 2).filter((w) => w.deref() !== undefined).length;
      }
    }
    yield endRecord(recs);
  }
  try {
    const r = await reg.apply(A, begin('mem-1', join(allowed, 'mem.img'), 8 * MiB), source());
    assert.equal(r.state.status, 'complete');
  } finally {
    await reg.close();
  }
  assert.ok(aliveEarly >= 0, 'measured');
  assert.ok(aliveEarly <= 2, `${aliveEarly} of the first ${recs.length / 2} records are still reachable during the transfer`);
});

// ---- ZERO chunks over gRPC ------------------------------------------------------------

test('ZERO chunks over gRPC: the digests agree and the target reads zeros where the source is zeros (over garbage)', async () => {
  const pool = await createDemoPool(join(dir, 'zpool'));
  // Base origin block b lives in data block b: zero origins 96..159 (four whole 1 MiB chunks).
  const fd = openSync(pool.dataPath, 'r+');
  try {
    writeSync(fd, Buffer.alloc(64 * pool.blockBytes), 0, 64 * pool.blockBytes, 96 * pool.blockBytes);
  } finally {
    closeSync(fd);
  }
  const img = expectedImage(pool.metadataPath, pool.dataPath, pool.baseDevId, pool.volumeSizeBytes);
  assert.ok(img.subarray(96 * pool.blockBytes, 160 * pool.blockBytes).equals(Buffer.alloc(64 * pool.blockBytes)));
  const certs = await makeTestCerts(join(dir, 'zcerts'));
  const zdir = join(dir, 'zallowed');
  mkdirSync(zdir);
  const config = await parseReceiverConfig(
    { tls: certs.server, stateDir: join(dir, 'zstate'), identities: { 'sender-a': { directories: [zdir] } } },
    join(dir, 'z.json'),
  );
  const rx = await startReceiver({ listen: '127.0.0.1:0', config });
  const client = await ReceiverClient.connect({ address: `127.0.0.1:${rx.port}`, tls: certs.clientA, serverName: 'localhost' });
  const target = join(zdir, 'zero.img');
  writeFileSync(target, Buffer.alloc(pool.volumeSizeBytes, 0xee));
  try {
    for (const compress of [true, false]) {
      const p = await planSend(
        { kind: 'offline', metadataPath: pool.metadataPath, dataPath: pool.dataPath, snapDevId: pool.baseDevId, volumeSizeBytes: pool.volumeSizeBytes },
        { withMappings: true },
      );
      try {
        const reader = await openSourceReader(p);
        try {
          // force: the garbage (and then the previous round) is there on purpose, over a target that received before (issue 13: DIVERGED otherwise).
          const r = await sendPlanOverGrpc(client, p, reader, { target, compress, transferId: `zero-${compress}`, maxAttempts: 1, force: true });
          assert.equal(r.state.status, 'TRANSFER_STATUS_COMPLETE');
          assert.ok(r.chunks.zero >= 4, `zero chunks sent: ${r.chunks.zero}`);
          assert.deepEqual(r.response!.digest, r.digest, 'receiver digest = sender digest');
        } finally {
          await reader.close();
        }
      } finally {
        await p.close();
      }
      assertSameImage(readImage(target, pool.volumeSizeBytes), img, `compress ${compress}`);
      writeFileSync(target, Buffer.alloc(pool.volumeSizeBytes, 0xee));
    }
  } finally {
    client.close();
    await rx.close();
  }
});
