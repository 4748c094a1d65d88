/**
 * The gRPC receiver and sender in one process, on 127.0.0.1:0, with real
 * mTLS certificates made by the test (openssl) and the offline demo pool as
 * the source: full then incremental byte-exact onto sparse files, health and
 * reflection, the raised HTTP/2 window, concurrent transfers, a busy target,
 * resume after a broken stream, takeover of a half-open call, abort and
 * expiry, every refusal of the security model (target untouched), and
 * malformed messages (status and offset named, target untouched).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  rmSync,
  mkdirSync,
  writeFileSync,
  readFileSync,
  existsSync,
  statSync,
  symlinkSync,
  utimesSync,
  truncateSync,
  openSync,
  readSync,
  closeSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type { ServerHttp2Session } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { DemoPool } from '../../src/thin/demo-pool.js';
import { planSend, type SendPlan } from '../../src/thin/planner.js';
import { openSourceReader, type VolumeReader } from '../../src/sender/volume-reader.js';
import { parseReceiverConfig } from '../../src/rpc/server-config.js';
import { startReceiver, type RunningReceiver } from '../../src/rpc/server.js';
import { ReceiverClient, sendPlanOverGrpc, type GrpcSendOptions, type GrpcSendResult } from '../../src/rpc/client.js';
import { newReceiverClient, unixMsOfTimestamp, type ApplyStreamRequest } from '../../src/rpc/proto.js';
import { DEFAULT_RECEIVE_WINDOW_BYTES } from '../../src/rpc/http2-window.js';
import { MESSAGE_OVERHEAD_BYTES } from '../../src/receiver/transfers.js';
import { rawCall as rawCallOf, beginMsg, dataMsg, grpcError, sha, gatedAt } from './receiver-helpers.js';
import { demoFixture, assertSameImage, readImage, rejects, waitFor as pollFor, type TestCerts } from './helpers.js';
import type * as Binding from 'zstd-napi/binding.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding') as typeof Binding;

let dir: string;
let allowed: string;
let outside: string;
let pool: DemoPool;
let img1: Buffer;
let img2: Buffer;
let certs: TestCerts;
let rx: RunningReceiver;
let address: string;
let clientA: ReceiverClient;
const sessions: ServerHttp2Session[] = [];
const CHECKPOINT_BYTES = 4 * 1024 * 1024;

before(async () => {
  ({ dir, pool, img1, img2, certs } = await demoFixture('thinship-grpc-'));
  allowed = join(dir, 'allowed');
  outside = join(dir, 'outside');
  mkdirSync(allowed);
  mkdirSync(outside);
  mkdirSync(join(dir, 'b-only'));
  const config = await parseReceiverConfig(
    {
      tls: certs.server,
      stateDir: join(dir, 'state'),
      checkpointIntervalBytes: CHECKPOINT_BYTES,
      identities: { 'sender-a': { directories: [allowed] }, 'sender-b': { directories: [join(dir, 'b-only')] } },
    },
    join(dir, 'receiver.json'),
  );
  rx = await startReceiver({ listen: '127.0.0.1:0', config, onHttp2Session: (s) => sessions.push(s) });
  address = `127.0.0.1:${rx.port}`;
  clientA = await ReceiverClient.connect({ address, tls: certs.clientA, serverName: 'localhost' });
});

after(async () => {
  clientA?.close();
  await rx?.close();
  rmSync(dir, { recursive: true, force: true });
});

function spec(snap: number, base?: number) {
  return {
    kind: 'offline' as const,
    metadataPath: pool.metadataPath,
    dataPath: pool.dataPath,
    snapDevId: snap,
    baseDevId: base,
    volumeSizeBytes: pool.volumeSizeBytes,
  };
}

async function withPlan<T>(snap: number, base: number | undefined, fn: (p: SendPlan) => Promise<T>, maxOpBytes?: number): Promise<T> {
  const p = await planSend(spec(snap, base), { withMappings: true, maxOpBytes });
  try {
    return await fn(p);
  } finally {
    await p.close();
  }
}

async function send(
  client: ReceiverClient,
  target: string,
  snap: number,
  base?: number,
  o: Partial<GrpcSendOptions> & { maxOpBytes?: number; wrapReader?: (r: VolumeReader) => VolumeReader } = {},
): Promise<GrpcSendResult> {
  return withPlan(
    snap,
    base,
    async (p) => {
      const opened = await openSourceReader(p);
      const reader = o.wrapReader ? o.wrapReader(opened) : opened;
      try {
        return await sendPlanOverGrpc(client, p, reader, { target, maxAttempts: 4, retryDelayMs: 50, ...o });
      } finally {
        await reader.close();
      }
    },
    o.maxOpBytes,
  );
}

test('full then incremental over mTLS: byte-exact on a sparse file, compressed, digests agree', async () => {
  const target = join(allowed, 'plain.img');
  const full = await send(clientA, target, pool.baseDevId);
  assert.equal(full.state.status, 'TRANSFER_STATUS_COMPLETE');
  assert.equal(full.dataBytes, full.plannedDataBytes);
  assert.ok(full.chunks.zstd > 0 && full.payloadBytes < full.dataBytes * 0.8, `compressed: ${full.payloadBytes} of ${full.dataBytes}`);
  assert.deepEqual(full.response!.digest, full.digest);
  assert.equal(statSync(target).size, pool.volumeSizeBytes);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after full');
  const inc = await send(clientA, target, pool.snapDevId, pool.baseDevId);
  assert.equal(inc.state.status, 'TRANSFER_STATUS_COMPLETE');
  assert.ok(inc.dataBytes < full.dataBytes / 4);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img2, 'after incremental');
  assert.ok(statSync(target).blocks * 512 < pool.volumeSizeBytes, 'the target stays sparse');
  // the same send again: already complete, nothing sent
  const again = await send(clientA, target, pool.snapDevId, pool.baseDevId);
  assert.equal(again.alreadyComplete, true);
  assert.equal(again.dataBytes, 0);
  // the full send of the base again: the target no longer holds it, so it is sent again
  assert.equal(await clientA.getTransferState(full.transferId), undefined, 'superseded by the incremental');
  const refull = await send(clientA, target, pool.baseDevId);
  assert.equal(refull.alreadyComplete, false);
  assert.equal(refull.dataBytes, full.dataBytes);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after the full again');
});

test('without compression every chunk goes RAW (the read buffer is the payload, recycled after its write): byte-exact', async () => {
  // Small ops: many more chunks than buffers in flight, so every buffer is reused many times.
  const target = join(allowed, 'raw.img');
  const full = await send(clientA, target, pool.baseDevId, undefined, { compress: false, maxOpBytes: 64 * 1024 });
  assert.equal(full.state.status, 'TRANSFER_STATUS_COMPLETE');
  assert.equal(full.chunks.zstd, 0);
  assert.ok(full.chunks.raw > 40, `raw chunks: ${full.chunks.raw}`);
  // RAW carries every byte; only all-zero chunks travel without payload.
  assert.equal(
    full.payloadBytes === full.dataBytes,
    full.chunks.zero === 0,
    `payload ${full.payloadBytes} of ${full.dataBytes} with ${full.chunks.zero} zero chunks`,
  );
  assert.ok(full.payloadBytes <= full.dataBytes);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after a RAW full send');
  const inc = await send(clientA, target, pool.snapDevId, pool.baseDevId, { compress: false, maxOpBytes: 64 * 1024 });
  assert.equal(inc.chunks.zstd, 0);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img2, 'after a RAW incremental');
});

test('--compress auto (zstd while it pays, raw when the link is faster): full and incremental byte-exact, every chunk one of zstd, raw or zero', async () => {
  // Small ops: enough chunks for the decision to measure both rates (sender/compress-decision.ts) and act on them.
  const target = join(allowed, 'auto.img');
  const full = await send(clientA, target, pool.baseDevId, undefined, { compress: 'auto', maxOpBytes: 64 * 1024 });
  assert.equal(full.state.status, 'TRANSFER_STATUS_COMPLETE');
  assert.equal(full.dataBytes, full.plannedDataBytes);
  const records = full.chunks.zstd + full.chunks.raw + full.chunks.zero;
  assert.ok(records > 40 && full.chunks.zstd > 0, `chunks: ${JSON.stringify(full.chunks)}`);
  assert.ok(full.payloadBytes <= full.dataBytes);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after an auto full send');
  const inc = await send(clientA, target, pool.snapDevId, pool.baseDevId, { compress: 'auto', maxOpBytes: 64 * 1024 });
  assert.equal(inc.state.status, 'TRANSFER_STATUS_COMPLETE');
  assertSameImage(readImage(target, pool.volumeSizeBytes), img2, 'after an auto incremental');
});

test('an incremental applies only onto its base (ZFS rule): a target holding another snapshot is refused, untouched', async () => {
  const target = join(allowed, 'base-check.img');
  await send(clientA, target, pool.snapDevId); // the target now holds device 2, not device 1
  const before = readImage(target, pool.volumeSizeBytes);
  await rejects(send(clientA, target, pool.snapDevId, pool.baseDevId), 'BASE_MISMATCH', /holds .*#2 .* applies to base .*#1/);
  assert.ok(readImage(target, pool.volumeSizeBytes).equals(before), 'nothing was written');
  // the matching base is accepted
  await send(clientA, target, pool.baseDevId);
  const inc = await send(clientA, target, pool.snapDevId, pool.baseDevId);
  assert.equal(inc.state.status, 'TRANSFER_STATUS_COMPLETE');
  assertSameImage(readImage(target, pool.volumeSizeBytes), img2, 'after the incremental onto its base');
});

test('the receiver raises its HTTP/2 receive window on every session', async () => {
  // A connection of this test's own, alive while it is checked (runs alone too).
  const before = sessions.length;
  const c = await ReceiverClient.connect({ address, tls: certs.clientA, serverName: 'localhost' });
  try {
    assert.equal(await c.getTransferState('window-probe'), undefined);
    const mine = sessions.slice(before);
    assert.equal(mine.length, 1, 'one new HTTP/2 session for the new connection');
    const s = mine[0]!;
    assert.equal(s.destroyed, false);
    assert.equal(s.localSettings.initialWindowSize, DEFAULT_RECEIVE_WINDOW_BYTES);
    assert.equal(s.state.effectiveLocalWindowSize, DEFAULT_RECEIVE_WINDOW_BYTES);
  } finally {
    c.close();
  }
});

/** Until `session`'s acknowledged stream window satisfies `ok` (each SETTINGS ACK emits 'localSettings'); bounded. */
async function streamWindowUntil(session: ServerHttp2Session, ok: (bytes: number) => boolean, what: string): Promise<number> {
  const deadline = Date.now() + 30_000;
  while (!ok(session.localSettings.initialWindowSize!)) {
    assert.ok(Date.now() < deadline, `${what}: the stream window is still ${session.localSettings.initialWindowSize}`);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1000);
      session.once('localSettings', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
  return session.localSettings.initialWindowSize!;
}

test("an open connection's stream window shrinks to its share of maxBufferedBytes as more connect, and grows back", async () => {
  const before = sessions.length;
  const first = await ReceiverClient.connect({ address, tls: certs.clientA, serverName: 'localhost' });
  const more: ReceiverClient[] = [];
  try {
    assert.equal(await first.getTransferState('window-share-probe'), undefined);
    const s = sessions[before]!;
    assert.equal(s.localSettings.initialWindowSize, DEFAULT_RECEIVE_WINDOW_BYTES);
    // 16 connections: each one's share of the default 128 MiB network half is 128 MiB / 17 less one message.
    for (let i = 0; i < 15; i++) more.push(await ReceiverClient.connect({ address, tls: certs.clientA, serverName: 'localhost' }));
    await Promise.all(more.map((c) => c.getTransferState('window-share-probe')));
    const open = sessions.filter((x) => !x.destroyed && !x.closed).length;
    assert.ok(open >= 16, `${open} open sessions`);
    const share = Math.min(DEFAULT_RECEIVE_WINDOW_BYTES, rx.registry.windowShareBytes(open) - rx.registry.maxChunkBytes - MESSAGE_OVERHEAD_BYTES);
    assert.ok(share < 8 * 1024 * 1024, `the share ${share} is well under the 32 MiB default`);
    await streamWindowUntil(s, (b) => b === share, 'the first connection, after 15 more connected');
    await streamWindowUntil(sessions[sessions.length - 1]!, (b) => b === share, 'the last connection');
    for (const c of more) c.close();
    more.length = 0;
    await streamWindowUntil(s, (b) => b === DEFAULT_RECEIVE_WINDOW_BYTES, 'after the others closed');
  } finally {
    for (const c of more) c.close();
    first.close();
  }
});

test('health checking and server reflection answer', async () => {
  const creds = grpc.credentials.createSsl(readFileSync(certs.clientA.ca), readFileSync(certs.clientA.key), readFileSync(certs.clientA.cert));
  const opts = { 'grpc.ssl_target_name_override': 'localhost' };
  const healthDef = protoLoader.loadSync(join(createRequire(import.meta.url).resolve('grpc-health-check/package.json'), '../proto/health/v1/health.proto'), {
    enums: String,
  });
  const Health = (grpc.loadPackageDefinition(healthDef) as any).grpc.health.v1.Health as grpc.ServiceClientConstructor;
  const h = new Health(address, creds, opts) as any;
  const status = await new Promise<{ status: string }>((res, rej) =>
    h.Check({ service: 'thinship.v1.ReceiverService' }, (e: Error | null, r: { status: string }) => (e ? rej(e) : res(r))),
  );
  assert.equal(status.status, 'SERVING');
  h.close();
  const reflDef = protoLoader.loadSync(join(createRequire(import.meta.url).resolve('@grpc/reflection'), '../../proto/grpc/reflection/v1/reflection.proto'));
  const Refl = (grpc.loadPackageDefinition(reflDef) as any).grpc.reflection.v1.ServerReflection as grpc.ServiceClientConstructor;
  const r = new Refl(address, creds, opts) as any;
  const call = r.ServerReflectionInfo();
  const answer = new Promise<any>((res, rej) => {
    call.on('data', res);
    call.on('error', rej);
  });
  call.write({ listServices: '' });
  const names = (await answer).listServicesResponse.service.map((s: { name: string }) => s.name);
  call.end();
  r.close();
  assert.ok(names.includes('thinship.v1.ReceiverService'), names.join(', '));
  assert.ok(names.includes('grpc.health.v1.Health'), names.join(', '));
});

test('concurrent transfers to different targets both complete', async () => {
  const [a, b] = await Promise.all([send(clientA, join(allowed, 'c1.img'), pool.baseDevId), send(clientA, join(allowed, 'c2.img'), pool.snapDevId)]);
  assert.equal(a.state.status, 'TRANSFER_STATUS_COMPLETE');
  assert.equal(b.state.status, 'TRANSFER_STATUS_COMPLETE');
  assertSameImage(readImage(join(allowed, 'c1.img'), pool.volumeSizeBytes), img1, 'c1');
  assertSameImage(readImage(join(allowed, 'c2.img'), pool.volumeSizeBytes), img2, 'c2');
});

/**
 * Sends up to `stopAtBytes` and cancels like a dying sender once the receiver
 * has made part of it durable (its state says so, not a byte count of ours).
 */
async function interruptedSend(target: string, snap: number, stopAtBytes: number, transferId: string): Promise<void> {
  const ac = new AbortController();
  const gate = gatedAt(stopAtBytes);
  const sending = send(clientA, target, snap, undefined, { transferId, signal: ac.signal, wrapReader: gate.wrap });
  sending.catch(() => undefined);
  try {
    await waitFor(async () => ((await clientA.getTransferState(transferId))?.durableOffsetBytes ?? 0) > 0, `a first checkpoint of ${transferId}`);
    ac.abort();
  } finally {
    gate.release();
  }
  await rejects(sending, 'ABORTED');
}

const waitFor = (cond: () => Promise<boolean>, what: string, ms = 10_000) => pollFor(cond, what, ms);

test('a broken stream leaves a resumable transfer; the re-run resumes and the target is byte-identical', async () => {
  const target = join(allowed, 'resume.img');
  const ref = await send(clientA, join(allowed, 'resume-ref.img'), pool.baseDevId); // uninterrupted, for the digest
  await interruptedSend(target, pool.baseDevId, 12 * 1024 * 1024, 'resume-1');
  let st = await clientA.getTransferState('resume-1');
  await waitFor(async () => {
    st = await clientA.getTransferState('resume-1');
    return st?.active === false;
  }, 'the broken call to end');
  assert.equal(st!.status, 'TRANSFER_STATUS_IN_PROGRESS');
  assert.ok(st!.durableOffsetBytes > 0, `durable offset ${st!.durableOffsetBytes}`);
  assert.equal(st!.digestState.length, 32);
  const r = await send(clientA, target, pool.baseDevId, undefined, { transferId: 'resume-1' });
  assert.equal(r.startOffsets[0], st!.durableOffsetBytes);
  assert.ok(r.dataBytes < r.plannedDataBytes, 'only the rest was sent');
  assert.equal(r.state.dataBytes, r.plannedDataBytes, 'whole-transfer counts continue across the resume');
  assert.deepEqual(r.digest, ref.digest, 'same digest as an uninterrupted transfer');
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'resumed');
});

/** A raw ApplyStream call (receiver-helpers.ts: write what you like), by default as sender-a. */
const rawCall = (client: ReceiverClient = clientA) => rawCallOf(client);

test('a second transfer to a target in use is refused until the first is aborted', async () => {
  const target = join(allowed, 'busy.img');
  const first = rawCall();
  first.write(beginMsg('busy-1', target));
  first.write(dataMsg(0, Buffer.alloc(65536, 7)));
  await waitFor(async () => (await clientA.getTransferState('busy-1'))?.active === true, 'busy-1 to begin');
  first.call.cancel();
  await waitFor(async () => (await clientA.getTransferState('busy-1'))?.active === false, 'busy-1 to stop');
  // busy-1 is resumable and holds the target
  const e = await rejects(send(clientA, target, pool.baseDevId), 'TRANSFER_BUSY', /busy-1/);
  assert.equal((e.details as { grpcCode?: number }).grpcCode, grpc.status.ABORTED);
  const ab = await clientA.abortTransfer('busy-1', 'test');
  assert.equal(ab.transferId, 'busy-1');
  assert.equal(await clientA.getTransferState('busy-1'), undefined);
  await send(clientA, target, pool.baseDevId);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after abort and a new send');
});

test('a new call for a running transfer takes over from a half-open one, and the transfer completes', async () => {
  const target = join(allowed, 'takeover.img');
  const stale = rawCall();
  // the same parameters a send of the base device gives (source id: metadata path # device id)
  stale.write(beginMsg('takeover-1', target, { volumeSizeBytes: pool.volumeSizeBytes, sourceId: `${pool.metadataPath}#${pool.baseDevId}` }));
  await waitFor(async () => (await clientA.getTransferState('takeover-1'))?.active === true, 'takeover-1 to begin');
  // the stale call never sends another byte nor hangs up
  const r = await send(clientA, target, pool.baseDevId, undefined, { transferId: 'takeover-1' });
  assert.equal(r.state.status, 'TRANSFER_STATUS_COMPLETE');
  const staleErr = await grpcError(stale.response);
  assert.equal(staleErr.code, grpc.status.ABORTED);
  assert.match(staleErr.details, /taken over/);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after takeover');
});

test('abandoned transfers expire and free their target', async () => {
  const config = await parseReceiverConfig(
    { tls: certs.server, stateDir: join(dir, 'state-expiry'), transferExpirySeconds: 60, identities: { 'sender-a': { directories: [allowed] } } },
    join(dir, 'x.json'),
  );
  const rx2 = await startReceiver({ listen: '127.0.0.1:0', config });
  const c2 = await ReceiverClient.connect({ address: `127.0.0.1:${rx2.port}`, tls: certs.clientA, serverName: 'localhost' });
  try {
    const target = join(allowed, 'expire.img');
    const call = rawCall(c2);
    call.write(beginMsg('exp-1', target));
    await waitFor(async () => (await c2.getTransferState('exp-1'))?.active === true, 'exp-1 to begin');
    call.call.cancel();
    await waitFor(async () => (await c2.getTransferState('exp-1'))?.active === false, 'exp-1 to stop');
    const st = await c2.getTransferState('exp-1');
    const expiresUnixMs = unixMsOfTimestamp(st!.expireTime);
    assert.ok(expiresUnixMs > Date.now() + 50_000 && expiresUnixMs <= Date.now() + 60_000);
    assert.deepEqual(await rx2.registry.sweep(Date.now()), [], 'not expired yet');
    assert.deepEqual(await rx2.registry.sweep(expiresUnixMs + 1), ['exp-1']);
    assert.equal(await c2.getTransferState('exp-1'), undefined);
    assert.equal(existsSync(join(dir, 'state-expiry', 'transfers', 'exp-1.json')), false, 'checkpoint file removed');
    const r = await send(c2, target, pool.baseDevId);
    assert.equal(r.state.status, 'TRANSFER_STATUS_COMPLETE');
  } finally {
    c2.close();
    await rx2.close();
  }
});

test('checkpoints survive a receiver restart: a new receiver on the same state dir resumes', async () => {
  const stateDir = join(dir, 'state-restart');
  const cfg = { tls: certs.server, stateDir, checkpointIntervalBytes: CHECKPOINT_BYTES, identities: { 'sender-a': { directories: [allowed] } } };
  let r1 = await startReceiver({ listen: '127.0.0.1:0', config: await parseReceiverConfig(cfg, join(dir, 'r.json')) });
  const port = r1.port;
  let c = await ReceiverClient.connect({ address: `127.0.0.1:${port}`, tls: certs.clientA, serverName: 'localhost' });
  const target = join(allowed, 'restart.img');
  // The sender stops reading at 12 MiB until released, so the receiver is shut down in the
  // middle of the transfer, after it made a checkpoint (the receiver's own durable state says
  // so, not a byte count of the sender's): its running transfer checkpoints what it applied.
  const gate = gatedAt(12 * 1024 * 1024);
  const sending = send(c, target, pool.baseDevId, undefined, { transferId: 'restart-1', maxAttempts: 1, wrapReader: gate.wrap });
  await waitFor(async () => ((await c.getTransferState('restart-1'))?.durableOffsetBytes ?? 0) > 0, 'a first checkpoint of restart-1');
  const closing = r1.close();
  gate.release();
  await rejects(sending, 'UNAVAILABLE');
  await closing;
  c.close();
  r1 = await startReceiver({ listen: `127.0.0.1:${port}`, config: await parseReceiverConfig(cfg, join(dir, 'r.json')) });
  c = await ReceiverClient.connect({ address: `127.0.0.1:${port}`, tls: certs.clientA, serverName: 'localhost' });
  try {
    const st = await c.getTransferState('restart-1');
    assert.equal(st!.status, 'TRANSFER_STATUS_IN_PROGRESS');
    assert.ok(st!.durableOffsetBytes > 0);
    const r = await send(c, target, pool.baseDevId, undefined, { transferId: 'restart-1' });
    assert.equal(r.startOffsets[0], st!.durableOffsetBytes);
    assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after restart and resume');
  } finally {
    c.close();
    await r1.close();
  }
});

// ---- security ---------------------------------------------------------------

test('refused: a client certificate from another CA, no client certificate, an expired one, a server from another CA', async () => {
  const target = join(allowed, 'never.img');
  const foreign = await ReceiverClient.connect({ address, tls: certs.foreign, serverName: 'localhost' });
  const expired = await ReceiverClient.connect({ address, tls: certs.expired, serverName: 'localhost' });
  const wrongServerCa = await ReceiverClient.connect({ address, tls: { ...certs.clientA, ca: certs.foreignCa }, serverName: 'localhost' });
  const noCert = newReceiverClient(address, grpc.credentials.createSsl(readFileSync(certs.clientA.ca)), { 'grpc.ssl_target_name_override': 'localhost' });
  try {
    const cases = [
      ['foreign CA', foreign, /refused our client certificate "sender-a" .*without a TLS alert; it is not signed by a CA in /],
      ['expired', expired, /refused our client certificate "sender-a" .*without a TLS alert; it expired on Feb {2}1 00:00:00 2020 GMT/],
      ['server from another CA', wrongServerCa, /127\.0\.0\.1:\d+: the receiver's certificate is not trusted: self-signed certificate in certificate chain/],
    ] as const;
    for (const [name, c, re] of cases) {
      // several attempts allowed: a refusal must not be retried
      const e = await rejects(send(c, target, pool.baseDevId, undefined, { maxAttempts: 4 }), 'UNAUTHENTICATED', re);
      assert.equal(e.retryable, false, name);
    }
    const st = await new Promise<grpc.ServiceError | null>((res) => noCert.GetTransferState({ transferId: 'x' }, (e) => res(e)));
    assert.ok(st && st.code === grpc.status.UNAVAILABLE, `no client certificate: ${st?.code} ${st?.details}`);
  } finally {
    foreign.close();
    expired.close();
    wrongServerCa.close();
    noCert.close();
  }
  assert.equal(existsSync(target), false, 'nothing created');
});

test('refused with PERMISSION_DENIED, nothing opened: identity not allowed, path escapes, symlink escapes', async () => {
  const victim = join(outside, 'victim.img');
  writeFileSync(victim, Buffer.alloc(4096, 0x5a));
  utimesSync(victim, new Date(1_000_000_000_000), new Date(1_000_000_000_000));
  symlinkSync(outside, join(allowed, 'link-out'));
  symlinkSync(victim, join(allowed, 'to-victim.img'));
  symlinkSync(join(outside, 'created-by-dangling.img'), join(allowed, 'dangling.img'));
  const clientB = await ReceiverClient.connect({ address, tls: certs.clientB, serverName: 'localhost' });
  try {
    await rejects(send(clientB, join(allowed, 'b.img'), pool.baseDevId), 'PERMISSION_DENIED', /sender-b/);
    assert.equal(existsSync(join(allowed, 'b.img')), false);
    const escapes = [
      `${allowed}/../outside/escape.img`,
      join(allowed, 'link-out', 'via-dir-link.img'),
      join(allowed, 'to-victim.img'),
      join(allowed, 'dangling.img'),
      victim,
      '/etc/passwd',
      'allowed/relative.img',
      'vg0/lv0',
      `${allowed}//double.img`,
      `${allowed}/./dot.img`,
    ];
    for (const [i, t] of escapes.entries()) {
      const c = rawCall();
      c.write(beginMsg(`escape-${i}`, t));
      c.write(dataMsg(0, Buffer.alloc(4096, 1)));
      c.call.end();
      const e = await grpcError(c.response);
      assert.equal(e.code, grpc.status.PERMISSION_DENIED, `${t}: ${grpc.status[e.code]} ${e.details}`);
      assert.match(e.details, /identity "sender-a" may not write target/);
    }
  } finally {
    clientB.close();
  }
  assert.deepEqual(readFileSync(victim), Buffer.alloc(4096, 0x5a), 'victim untouched');
  assert.equal(statSync(victim).mtimeMs, 1_000_000_000_000, 'victim not even written');
  assert.equal(existsSync(join(outside, 'escape.img')), false);
  assert.equal(existsSync(join(outside, 'via-dir-link.img')), false);
  assert.equal(existsSync(join(outside, 'created-by-dangling.img')), false);
});

// ---- protocol -----------------------------------------------------------------

test('a protocol version mismatch is FAILED_PRECONDITION naming both versions', async () => {
  const c = rawCall();
  c.write(beginMsg('v2', join(allowed, 'v2.img'), { protocolVersion: 2 }));
  c.call.end();
  const e = await grpcError(c.response);
  assert.equal(e.code, grpc.status.FAILED_PRECONDITION);
  assert.match(e.details, /version 2.*version 1/);
  assert.equal(existsSync(join(allowed, 'v2.img')), false);
});

const MAL_SIZE = 16 * 1024 * 1024;
const FILL = 0xaa;

/**
 * A malformed case: records after a valid Begin (incremental, so nothing
 * zeroes gaps) on a fresh target whose first MiB is filled.
 */
async function malformed(name: string, records: (ApplyStreamRequest | Record<string, unknown>)[], want: grpc.status, re: RegExp, untouched: [number, number]) {
  const target = join(allowed, `mal-${name}.img`);
  writeFileSync(target, Buffer.alloc(1024 * 1024, FILL));
  truncateSync(target, MAL_SIZE);
  const before = readFileSync(target);
  const c = rawCall();
  // force: the target has no record of holding 'test-base' (issue 13); these cases are about the records.
  c.write(beginMsg(`mal-${name}`, target, { volumeSizeBytes: MAL_SIZE, mode: 'TRANSFER_MODE_INCREMENTAL', baseId: 'test-base', force: true }));
  for (const r of records) c.write(r);
  c.call.end();
  const e = await grpcError(c.response);
  assert.equal(e.code, want, `${name}: ${grpc.status[e.code]} ${e.details}`);
  assert.match(e.details, re, name);
  const after = readFileSync(target);
  assert.equal(after.length, MAL_SIZE, `${name}: size unchanged`);
  assert.ok(after.subarray(untouched[0], untouched[1]).equals(before.subarray(untouched[0], untouched[1])), `${name}: the bad record's range is untouched`);
}

test('malformed messages: INVALID_ARGUMENT or DATA_LOSS naming the offset, the bad record not written', async () => {
  const blk = Buffer.alloc(65536, 1);
  await malformed(
    'range',
    [dataMsg(MAL_SIZE - 4096, Buffer.alloc(8192, 2))],
    grpc.status.INVALID_ARGUMENT,
    new RegExp(`offset ${MAL_SIZE - 4096}: .*beyond the end`),
    [MAL_SIZE - 4096, MAL_SIZE],
  );
  await malformed(
    'oversized',
    [
      {
        kind: 'data',
        data: {
          offsetBytes: 0,
          lengthBytes: 8 * 1024 * 1024,
          payload: Buffer.alloc(0),
          encoding: 'ENCODING_ZERO',
          checksum: sha(Buffer.alloc(8 * 1024 * 1024)),
        },
      },
    ],
    grpc.status.INVALID_ARGUMENT,
    /offset 0: length 8388608 is more than this receiver's limit/,
    [0, 8 * 1024 * 1024],
  );
  await malformed(
    'checksum',
    [dataMsg(0, blk), dataMsg(65536, blk, { checksum: sha(Buffer.from('other')) })],
    grpc.status.DATA_LOSS,
    /offset 65536: checksum mismatch/,
    [65536, 131072],
  );
  await malformed(
    'zstd-garbage',
    [dataMsg(131072, blk, { payload: Buffer.from('definitely not a zstd frame, just text'), encoding: 'ENCODING_ZSTD' })],
    grpc.status.INVALID_ARGUMENT,
    /offset 131072.*bad zstd frame/,
    [131072, 196608],
  );
  const frame = Buffer.alloc(zstd.compressBound(4096));
  const n = zstd.compress(frame, Buffer.alloc(4096, 3), 1);
  await malformed(
    'lying-zstd',
    [dataMsg(0, Buffer.alloc(8192, 3), { payload: frame.subarray(0, n), encoding: 'ENCODING_ZSTD' })],
    grpc.status.INVALID_ARGUMENT,
    /offset 0.*frame says 4096 bytes of content, the record says 8192/,
    [0, 8192],
  );
  await malformed(
    'lying-raw',
    [dataMsg(0, Buffer.alloc(8192, 3), { payload: Buffer.alloc(4096, 3) })],
    grpc.status.INVALID_ARGUMENT,
    /offset 0: raw payload of 4096 bytes, the record says 8192/,
    [0, 8192],
  );
  // a decompression bomb: 64 MiB of zeros in a tiny frame, sent as a 64 KiB record
  const bombSrc = Buffer.alloc(64 * 1024 * 1024);
  const bomb = Buffer.alloc(zstd.compressBound(bombSrc.length));
  const bn = zstd.compress(bomb, bombSrc, 1);
  await malformed(
    'bomb',
    [dataMsg(0, blk, { payload: bomb.subarray(0, bn), encoding: 'ENCODING_ZSTD' })],
    grpc.status.INVALID_ARGUMENT,
    /offset 0.*frame says 67108864 bytes/,
    [0, 65536],
  );
  // a frame that does not state its size (streaming compression without a pledged size)
  // (input first with `continue`, then `end` with none: zstd cannot know the size up front)
  const cctx = new zstd.CCtx();
  const sf = Buffer.alloc(zstd.compressBound(65536) + 64);
  const [, p1, consumed] = cctx.compressStream2(sf, blk, 0 /* continue */);
  assert.equal(consumed, blk.length);
  let produced = p1;
  for (let left = 1; left > 0;) {
    const [l, p] = cctx.compressStream2(sf.subarray(produced), Buffer.alloc(0), 2 /* end */);
    produced += p;
    left = l;
  }
  assert.equal(zstd.getFrameContentSize(sf.subarray(0, produced)), null);
  await malformed(
    'no-size',
    [dataMsg(0, blk, { payload: sf.subarray(0, produced), encoding: 'ENCODING_ZSTD' })],
    grpc.status.INVALID_ARGUMENT,
    /offset 0.*does not state its content size/,
    [0, 65536],
  );
  await malformed('order', [dataMsg(65536, blk), dataMsg(0, blk)], grpc.status.INVALID_ARGUMENT, /offset 0: out of order/, [0, 65536]);
  await malformed(
    'end-digest',
    [dataMsg(0, blk), { kind: 'end', end: { records: 3, dataRecords: 1, unmapRecords: 0, dataBytes: 65536, unmapBytes: 0, digest: Buffer.alloc(32, 9) } }],
    grpc.status.DATA_LOSS,
    /stream digest mismatch/,
    [65536, MAL_SIZE],
  );
  await malformed('second-begin', [beginMsg('mal-second-begin', join(allowed, 'mal-second-begin.img'))], grpc.status.INVALID_ARGUMENT, /second Begin/, [
    0,
    MAL_SIZE,
  ]);
});

test('a message larger than the receive limit is refused by gRPC before it is read', async () => {
  const target = join(allowed, 'huge.img');
  writeFileSync(target, Buffer.alloc(1024 * 1024, FILL));
  const c = rawCall();
  c.write(beginMsg('huge', target, { volumeSizeBytes: 16 * 1024 * 1024, mode: 'TRANSFER_MODE_INCREMENTAL', baseId: 'test-base', force: true, grow: true }));
  c.write(dataMsg(0, Buffer.alloc(5 * 1024 * 1024, 4)));
  c.call.end();
  const e = await grpcError(c.response);
  assert.equal(e.code, grpc.status.RESOURCE_EXHAUSTED, e.details);
  assert.ok(
    readFileSync(target)
      .subarray(0, 1024 * 1024)
      .equals(Buffer.alloc(1024 * 1024, FILL)),
  );
});

// ---- loop devices ----------------------------------------------------------------

test('onto a loop device (4096-byte sectors, pre-filled with garbage): full then incremental, byte-exact', async (t) => {
  const backing = join(dir, 'loop.img');
  writeFileSync(backing, Buffer.alloc(pool.volumeSizeBytes, 0xee));
  // Skip only when loop devices truly cannot exist here; any other losetup failure is a failure.
  if (!existsSync('/dev/loop-control')) {
    t.skip('no loop devices here (/dev/loop-control is missing)');
    return;
  }
  const dev = execFileSync('losetup', ['-f', '--show', '--sector-size', '4096', backing], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const smallBacking = join(dir, 'loop-small.img');
  writeFileSync(smallBacking, Buffer.alloc(pool.volumeSizeBytes / 2, 0xee));
  const small = execFileSync('losetup', ['-f', '--show', smallBacking], { encoding: 'utf8' }).trim();
  t.after(() => {
    execFileSync('losetup', ['-d', small]);
  });
  const config = await parseReceiverConfig(
    { tls: certs.server, stateDir: join(dir, 'state-loop'), identities: { 'sender-a': { devices: [dev, small] } } },
    join(dir, 'loop.json'),
  );
  const rx2 = await startReceiver({ listen: '127.0.0.1:0', config });
  const c = await ReceiverClient.connect({ address: `127.0.0.1:${rx2.port}`, tls: certs.clientA, serverName: 'localhost' });
  try {
    const readDev = () => {
      const b = Buffer.alloc(pool.volumeSizeBytes);
      const fd = openSync(dev, 'r');
      try {
        readSync(fd, b, 0, b.length, 0);
      } finally {
        closeSync(fd);
      }
      return b;
    };
    await send(c, dev, pool.baseDevId);
    assertSameImage(readDev(), img1, 'loop full (unmapped ranges zeroed over the garbage)');
    await send(c, dev, pool.snapDevId, pool.baseDevId);
    assertSameImage(readDev(), img2, 'loop incremental');
    await rejects(send(c, join(allowed, 'not-a-device.img'), pool.baseDevId), 'PERMISSION_DENIED');
    // a device smaller than the volume: refused before anything is written or recorded
    const e = await rejects(send(c, small, pool.baseDevId, undefined, { transferId: 'too-small' }), 'TARGET_TOO_SMALL');
    assert.equal((e.details as { grpcCode?: number }).grpcCode, grpc.status.FAILED_PRECONDITION);
    assert.equal(await c.getTransferState('too-small'), undefined);
    const head = Buffer.alloc(65536);
    const fd = openSync(small, 'r');
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    assert.ok(head.equals(Buffer.alloc(65536, 0xee)), 'the small device is untouched');
  } finally {
    c.close();
    await rx2.close();
    execFileSync('losetup', ['-d', dev]);
  }
});
