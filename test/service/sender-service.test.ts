/**
 * The sender daemon's API over real gRPC with real certificates on loopback:
 * a caller plans, starts (idempotent on its request id), watches, lists and
 * cancels sends from an offline pool to an in-process receiver; the daemon
 * authenticates to the receiver with its own certificate; the caller's rules
 * bound sources, destinations and actions; another identity's transfers are
 * not found. Targets are compared byte for byte with the snapshots.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, rmSync, symlinkSync, readFileSync, writeFileSync } from 'node:fs';
import { ThinshipError } from '../../src/errors.js';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { parseSenderConfig, type SenderConfig } from '../../src/service/sender-config.js';
import { startSenderServer, type RunningSender } from '../../src/rpc/sender-server.js';
import { senderProto } from '../../src/rpc/proto.js';
import { loadClientTls, clientCredentialsOf, type TlsFiles } from '../../src/rpc/tls.js';
import { planSend } from '../../src/thin/planner.js';
import { expectedImage } from '../helpers/offline-image.js';
import { demoFixture, assertSameImage, type TestCerts } from './helpers.js';
import { startTestReceiver, waitFor, type TestReceiver } from './receiver-helpers.js';

let dir: string;
let certs: TestCerts;
let pool: DemoPool;
let rx: TestReceiver;
let sender: RunningSender;
let config: SenderConfig;
let img1: Buffer;
let img2: Buffer;
const targets = () => join(dir, 'targets');

type Info = Record<string, unknown> & { transferId: string; state: string };
type Client = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

before(async () => {
  ({ dir, pool, img1, img2, certs } = await demoFixture('thinship-sendersvc-'));
  // Offline pools the callers may send from: the fixture's, and more made under pools/.
  mkdirSync(join(dir, 'pools'));
  mkdirSync(join(dir, 'elsewhere'));
  // The receiver lets identity sender-a (the daemon's own certificate) write under targets/.
  rx = await startRx('127.0.0.1:0');
  config = await parseSenderConfig(
    {
      tls: certs.server,
      stateDir: join(dir, 'sender-state'),
      receiverTls: certs.clientA,
      maxActiveTransfers: 2,
      identities: {
        // Callers: sender-a (the orchestrator) may do everything with the demo pool to this receiver;
        // sender-b may only watch.
        'sender-a': {
          sources: { offlineDirectories: [pool.dir, join(dir, 'pools')] },
          destinations: [{ receiver: rx.address, target: `${targets()}/*` }],
        },
        'sender-b': {
          actions: ['watch'],
          sources: { offlineDirectories: [pool.dir, join(dir, 'pools')] },
          destinations: [{ receiver: rx.address, target: `${targets()}/*` }],
        },
      },
    },
    join(dir, 'sender.json'),
  );
  sender = await startSender();
});

after(async () => {
  await sender?.close();
  await rx?.close();
  rmSync(dir, { recursive: true, force: true });
});

function startRx(listen: string): Promise<TestReceiver> {
  return startTestReceiver(certs, { stateDir: join(dir, 'rx-state'), identities: { 'sender-a': { directories: [targets()] } } }, join(dir, 'rx.json'), listen);
}

function startSender(): Promise<RunningSender> {
  return startSenderServer({ listen: '127.0.0.1:0', config, log: pino({ level: 'silent' }), lockDir: join(dir, 'locks'), retryDelayMs: 100 });
}

async function connect(tls: TlsFiles): Promise<Client> {
  const { Client } = senderProto();
  const creds = clientCredentialsOf(await loadClientTls(tls));
  return new Client(`127.0.0.1:${sender.port}`, creds, { 'grpc.ssl_target_name_override': 'localhost' }) as unknown as Client;
}

function call<T>(c: Client, method: string, req: Record<string, unknown>): Promise<T> {
  return new Promise((resolve, reject) => {
    (c[method] as (r: unknown, cb: (e: grpc.ServiceError | null, r: T) => void) => void).call(c, req, (e, r) => (e ? reject(e) : resolve(r)));
  });
}

async function refused(p: Promise<unknown>, code: grpc.status, re: RegExp): Promise<void> {
  await assert.rejects(p, (e: grpc.ServiceError) => {
    assert.equal(e.code, code, `${e.code}: ${e.details}`);
    assert.match(e.details, re);
    return true;
  });
}

/** Every state a WatchTransfer call delivers until the server ends it. */
function watchAll(c: Client, transferId: string): Promise<Info[]> {
  return new Promise((resolve, reject) => {
    const seen: Info[] = [];
    const s = (c.WatchTransfer as (r: unknown) => grpc.ClientReadableStream<{ transfer: Info }>).call(c, { transferId });
    s.on('data', (m: { transfer: Info }) => seen.push(m.transfer));
    s.on('error', reject);
    s.on('end', () => resolve(seen));
  });
}

const offlineSource = (snapshot: number, base?: number) => ({
  snapshot: String(snapshot),
  base: base === undefined ? '' : String(base),
  offlinePool: { metadataPath: pool.metadataPath, dataPath: pool.dataPath, volumeSizeBytes: pool.volumeSizeBytes },
});

test('Plan gives the same figures as the planner (thinship plan)', async () => {
  const c = await connect(certs.clientA);
  try {
    const r = await call<Record<string, unknown>>(c, 'Plan', { source: offlineSource(pool.snapDevId, pool.baseDevId) });
    const p = await planSend({
      kind: 'offline',
      metadataPath: pool.metadataPath,
      dataPath: pool.dataPath,
      snapDevId: pool.snapDevId,
      baseDevId: pool.baseDevId,
      volumeSizeBytes: pool.volumeSizeBytes,
    });
    try {
      const t = p.plan.totals;
      assert.deepEqual(r, {
        mode: 'incremental',
        dataBytes: t.dataBytes,
        unmapBytes: t.unmapBytes,
        dataOps: t.dataOps,
        unmapOps: t.unmapOps,
        volumeSizeBytes: t.volumeSizeBytes,
        blockSizeBytes: t.blockSizeBytes,
      });
    } finally {
      await p.close();
    }
  } finally {
    c.close();
  }
});

test('StartTransfer then WatchTransfer: full then incremental reach DONE with the digest, the target equals each snapshot', async () => {
  const c = await connect(certs.clientA);
  try {
    const target = join(targets(), 'replica.img');
    const full = await call<{ transfer: Info }>(c, 'StartTransfer', {
      requestId: 'full-1',
      source: offlineSource(pool.baseDevId),
      destination: { receiverAddress: rx.address, serverName: 'localhost', target },
    });
    assert.match(full.transfer.transferId, /^tsd-[0-9a-f]{32}$/);
    const states = await watchAll(c, full.transfer.transferId);
    const last = states.at(-1)!;
    assert.equal(last.state, 'STATE_DONE', JSON.stringify(last));
    assert.match(String(last.digest), /^[0-9a-f]{64}$/);
    assert.ok(Number(last.totalBytes) > 0 && last.doneBytes === last.totalBytes);
    assert.ok(last.finishTime !== null && last.createTime !== null, 'times are set');
    assertSameImage(readFileSync(target), img1, 'after the full send');
    const inc = await call<{ transfer: Info }>(c, 'StartTransfer', {
      requestId: 'inc-1',
      source: offlineSource(pool.snapDevId, pool.baseDevId),
      destination: { receiverAddress: rx.address, serverName: 'localhost', target },
    });
    const incStates = await watchAll(c, inc.transfer.transferId);
    assert.equal(incStates.at(-1)!.state, 'STATE_DONE', JSON.stringify(incStates.at(-1)));
    assertSameImage(readFileSync(target), img2, 'after the incremental');
    // A watcher that comes late gets the final state at once, then the end.
    const late = await watchAll(c, full.transfer.transferId);
    assert.equal(late.length, 1);
    assert.equal(late[0]!.state, 'STATE_DONE');
    // Listed newest first.
    const list = await call<{ transfers: Info[] }>(c, 'ListTransfers', {});
    assert.deepEqual(
      list.transfers.map((t) => t.requestId),
      ['inc-1', 'full-1'],
    );
  } finally {
    c.close();
  }
});

test('the per-record checksum: BLAKE3 unless options.checksum says sha256; the receiver records what each transfer used', async () => {
  const c = await connect(certs.clientA);
  const r = await rx.client(certs.clientA);
  try {
    for (const [requestId, checksum, want] of [
      ['sum-default', undefined, 'CHECKSUM_ALGORITHM_BLAKE3'],
      ['sum-sha256', 'sha256', 'CHECKSUM_ALGORITHM_SHA256'],
    ] as const) {
      const target = join(targets(), `${requestId}.img`);
      const started = await call<{ transfer: Info }>(c, 'StartTransfer', {
        requestId,
        source: offlineSource(pool.baseDevId),
        destination: { receiverAddress: rx.address, serverName: 'localhost', target },
        ...(checksum ? { options: { checksum } } : {}),
      });
      const last = (await watchAll(c, started.transfer.transferId)).at(-1)!;
      assert.equal(last.state, 'STATE_DONE', JSON.stringify(last));
      assert.equal((await r.getTransferState(started.transfer.transferId))?.checksum, want, requestId);
      assertSameImage(readFileSync(target), img1, requestId);
    }
  } finally {
    c.close();
  }
});

test('StartTransfer is idempotent on request_id; the same id for a different request is refused', async () => {
  const c = await connect(certs.clientA);
  try {
    const req = {
      requestId: 'idem-1',
      source: offlineSource(pool.baseDevId),
      destination: { receiverAddress: rx.address, serverName: 'localhost', target: join(targets(), 'idem.img') },
    };
    const a = await call<{ transfer: Info }>(c, 'StartTransfer', req);
    const b = await call<{ transfer: Info }>(c, 'StartTransfer', req);
    assert.equal(a.transfer.transferId, b.transfer.transferId);
    await refused(
      call(c, 'StartTransfer', { ...req, destination: { ...req.destination, target: join(targets(), 'other.img') } }),
      grpc.status.INVALID_ARGUMENT,
      /request_id idem-1 was already used for a different request/,
    );
    assert.equal((await watchAll(c, a.transfer.transferId)).at(-1)!.state, 'STATE_DONE');
  } finally {
    c.close();
  }
});

test("the caller's rules: sources outside its directories (also through a symlink), other destinations and actions it lacks are PERMISSION_DENIED; another identity's transfer is NOT_FOUND", async () => {
  const a = await connect(certs.clientA);
  const b = await connect(certs.clientB);
  try {
    const dest = { receiverAddress: rx.address, serverName: 'localhost', target: join(targets(), 'acl.img') };
    // A symlink inside the allowed directory to a pool outside it: judged by its real path.
    copyFileSync(pool.metadataPath, join(dir, 'elsewhere', 'copy.tmeta'));
    symlinkSync(join(dir, 'elsewhere', 'copy.tmeta'), join(dir, 'pools', 'link.tmeta'));
    const viaLink = {
      ...offlineSource(pool.baseDevId),
      offlinePool: { metadataPath: join(dir, 'pools', 'link.tmeta'), dataPath: pool.dataPath, volumeSizeBytes: pool.volumeSizeBytes },
    };
    await refused(
      call(a, 'StartTransfer', { requestId: 'acl-1', source: viaLink, destination: dest }),
      grpc.status.PERMISSION_DENIED,
      /may not send from the offline pool .*link\.tmeta/,
    );
    await refused(
      call(a, 'StartTransfer', {
        requestId: 'acl-2',
        source: offlineSource(pool.baseDevId),
        destination: { ...dest, target: join(dir, 'elsewhere', 'x.img') },
      }),
      grpc.status.PERMISSION_DENIED,
      /may not send to/,
    );
    await refused(
      call(a, 'StartTransfer', { requestId: 'acl-3', source: offlineSource(pool.baseDevId), destination: { ...dest, receiverAddress: '127.0.0.1:1' } }),
      grpc.status.PERMISSION_DENIED,
      /may not send to 127\.0\.0\.1:1/,
    );
    await refused(
      call(a, 'StartTransfer', { requestId: 'acl-4', source: { snapshot: 'vg0/snap1' }, destination: dest }),
      grpc.status.PERMISSION_DENIED,
      /may not send vg0\/snap1/,
    );
    await refused(
      call(b, 'StartTransfer', { requestId: 'acl-5', source: offlineSource(pool.baseDevId), destination: dest }),
      grpc.status.PERMISSION_DENIED,
      /identity sender-b may not start transfers/,
    );
    await refused(call(b, 'Plan', { source: offlineSource(pool.baseDevId) }), grpc.status.PERMISSION_DENIED, /may not plan/);
    const mine = await call<{ transfer: Info }>(a, 'StartTransfer', { requestId: 'acl-ok', source: offlineSource(pool.baseDevId), destination: dest });
    await refused(call(b, 'GetTransfer', { transferId: mine.transfer.transferId }), grpc.status.NOT_FOUND, /no transfer/);
    await refused(call(b, 'CancelTransfer', { transferId: mine.transfer.transferId }), grpc.status.PERMISSION_DENIED, /may not cancel/);
    assert.deepEqual((await call<{ transfers: Info[] }>(b, 'ListTransfers', {})).transfers, [], "sender-b sees none of sender-a's transfers");
    assert.equal((await watchAll(a, mine.transfer.transferId)).at(-1)!.state, 'STATE_DONE');
  } finally {
    a.close();
    b.close();
  }
});

test('CancelTransfer stops a running send and aborts it on the receiver', async () => {
  const c = await connect(certs.clientA);
  try {
    const target = join(targets(), 'cancel.img');
    // 64 KiB/s: the send runs for minutes unless cancelled.
    const t = await call<{ transfer: Info }>(c, 'StartTransfer', {
      requestId: 'cancel-1',
      source: offlineSource(pool.baseDevId),
      destination: { receiverAddress: rx.address, serverName: 'localhost', target },
      options: { bandwidthLimitBytesPerSecond: 65536 },
    });
    const watching = watchAll(c, t.transfer.transferId);
    // Wait for the receiver to hold the transfer (a state, not a timer).
    const rc = await rx.client(certs.clientA);
    await waitFor(async () => (await rc.getTransferState(t.transfer.transferId))?.active === true, 'the receiver to hold the running transfer', 60_000);
    const r = await call<{ transfer: Info }>(c, 'CancelTransfer', { transferId: t.transfer.transferId, reason: 'test' });
    assert.equal(r.transfer.state, 'STATE_CANCELLED');
    assert.match(String(r.transfer.errorMessage), /cancelled by sender-a: test/);
    const states = await watching;
    assert.equal(states.at(-1)!.state, 'STATE_CANCELLED');
    assert.ok(
      states.some((s) => s.state === 'STATE_SENDING'),
      'the watcher saw it sending',
    );
    assert.equal(await rc.getTransferState(t.transfer.transferId), undefined, 'the receiver-side transfer is gone (aborted)');
  } finally {
    c.close();
  }
});

test('two transfers at once (two pools), and one survives its receiver restarting mid-transfer (retried, resumed, byte-exact)', async () => {
  const c = await connect(certs.clientA);
  // Transfers of one pool take turns: the second runs from another pool, beside the first.
  const pool2 = await createDemoPool(join(dir, 'pools', 'demo2'));
  const source2 = {
    snapshot: String(pool2.snapDevId),
    base: '',
    offlinePool: { metadataPath: pool2.metadataPath, dataPath: pool2.dataPath, volumeSizeBytes: pool2.volumeSizeBytes },
  };
  try {
    const dest = (name: string) => ({ receiverAddress: rx.address, serverName: 'localhost', target: join(targets(), name) });
    const slow = await call<{ transfer: Info }>(c, 'StartTransfer', {
      requestId: 'pair-slow',
      source: offlineSource(pool.baseDevId),
      destination: dest('pair-slow.img'),
      options: { bandwidthLimitBytesPerSecond: 2 * 1024 * 1024 },
    });
    const fast = await call<{ transfer: Info }>(c, 'StartTransfer', { requestId: 'pair-fast', source: source2, destination: dest('pair-fast.img') });
    const fastStates = await watchAll(c, fast.transfer.transferId);
    assert.equal(fastStates.at(-1)!.state, 'STATE_DONE');
    assertSameImage(
      readFileSync(join(targets(), 'pair-fast.img')),
      expectedImage(pool2.metadataPath, pool2.dataPath, pool2.snapDevId, pool2.volumeSizeBytes),
      'the fast one',
    );
    const slowNow = (await call<{ transfer: Info }>(c, 'GetTransfer', { transferId: slow.transfer.transferId })).transfer;
    assert.notEqual(slowNow.state, 'STATE_DONE', 'the fast one did not wait for the slow one (31 MiB at 2 MiB/s)');
    await waitFor(
      async () => Number((await call<{ transfer: Info }>(c, 'GetTransfer', { transferId: slow.transfer.transferId })).transfer.doneBytes) >= 2 * 1024 * 1024,
      'the slow send to be under way',
      60_000,
    );
    // The receiver goes away (its transfers checkpoint) and comes back on the same address.
    const port = rx.rx.port;
    await rx.close();
    rx = await startRx(`127.0.0.1:${port}`);
    const states = await watchAll(c, slow.transfer.transferId);
    const last = states.at(-1)!;
    assert.equal(last.state, 'STATE_DONE', JSON.stringify(last));
    assert.ok(Number(last.retries) >= 1, `the daemon retried (${String(last.retries)})`);
    assertSameImage(readFileSync(join(targets(), 'pair-slow.img')), img1, 'the one whose receiver restarted');
  } finally {
    c.close();
  }
});

test('a restarted daemon resumes the transfers that were running (same transfer id, the receiver continues), byte-exact', async () => {
  const target = join(targets(), 'restart.img');
  let c = await connect(certs.clientA);
  const t = await call<{ transfer: Info }>(c, 'StartTransfer', {
    requestId: 'restart-1',
    source: offlineSource(pool.baseDevId),
    destination: { receiverAddress: rx.address, serverName: 'localhost', target },
    options: { bandwidthLimitBytesPerSecond: 8 * 1024 * 1024 },
  });
  const id = t.transfer.transferId;
  await waitFor(
    async () => Number((await call<{ transfer: Info }>(c, 'GetTransfer', { transferId: id })).transfer.doneBytes) >= 4 * 1024 * 1024,
    'the send to be under way',
    60_000,
  );
  c.close();
  await sender.close();
  // A second daemon on the same state directory while the first runs is refused; here the first is gone.
  sender = await startSender();
  c = await connect(certs.clientA);
  try {
    const now = (await call<{ transfer: Info }>(c, 'GetTransfer', { transferId: id })).transfer;
    assert.notEqual(now.state, 'STATE_CANCELLED', 'stopping the daemon did not cancel the transfer for good');
    assert.match(String(now.errorMessage), /resumed after a restart of the sender daemon/);
    const states = await watchAll(c, id);
    assert.equal(states.at(-1)!.state, 'STATE_DONE', JSON.stringify(states.at(-1)));
    assertSameImage(readFileSync(target), img1, 'after the resumed send');
    const rc = await rx.client(certs.clientA);
    const st = await rc.getTransferState(id);
    assert.equal(st?.status, 'TRANSFER_STATUS_COMPLETE');
  } finally {
    c.close();
  }
});

test('a second daemon on the same state directory is refused; an unreadable transfer record is quarantined and the daemon starts', async () => {
  await assert.rejects(
    startSender(),
    (e: unknown) => e instanceof ThinshipError && e.code === 'TARGET_BUSY' && /in use by another thinship sender-serve \(pid \d+\)/.test(e.message),
  );
  await sender.close();
  writeFileSync(join(dir, 'sender-state', 'transfers', 'tsd-00000000000000000000000000000000.json'), '{"format":1,"owner":');
  writeFileSync(join(dir, 'sender-state', 'transfers', 'junk.json'), 'garbage');
  sender = await startSender();
  assert.deepEqual(
    readdirSync(join(dir, 'sender-state', 'transfers')).filter((f) => f.startsWith('junk') || f.startsWith('tsd-0000')),
    [],
  );
  assert.equal(readdirSync(join(dir, 'sender-state', 'transfers', 'quarantine')).length, 2);
  const c = await connect(certs.clientA);
  try {
    const list = await call<{ transfers: Info[] }>(c, 'ListTransfers', {});
    assert.ok(
      list.transfers.some((t) => t.requestId === 'restart-1' && t.state === 'STATE_DONE'),
      'finished transfers are remembered across restarts',
    );
  } finally {
    c.close();
  }
});

test('hostile requests are refused with INVALID_ARGUMENT naming the field, and start nothing', async () => {
  const c = await connect(certs.clientA);
  try {
    const dest = { receiverAddress: rx.address, serverName: 'localhost', target: join(targets(), 'hostile.img') };
    const before = (await call<{ transfers: Info[] }>(c, 'ListTransfers', {})).transfers.length;
    await refused(
      call(c, 'StartTransfer', { requestId: '../../etc', source: offlineSource(pool.baseDevId), destination: dest }),
      grpc.status.INVALID_ARGUMENT,
      /request_id .* must be 1-128 of/,
    );
    await refused(
      call(c, 'StartTransfer', { requestId: 'x'.repeat(129), source: offlineSource(pool.baseDevId), destination: dest }),
      grpc.status.INVALID_ARGUMENT,
      /request_id/,
    );
    await refused(
      call(c, 'StartTransfer', { requestId: 'huge-1', source: { ...offlineSource(pool.baseDevId), snapshot: '1'.repeat(10_000) }, destination: dest }),
      grpc.status.INVALID_ARGUMENT,
      /source\.snapshot is longer than 300 bytes/,
    );
    await refused(
      call(c, 'StartTransfer', { requestId: 'huge-2', source: offlineSource(pool.baseDevId), destination: { ...dest, target: `/${'a'.repeat(5000)}` } }),
      grpc.status.INVALID_ARGUMENT,
      /destination fields are too long/,
    );
    await refused(
      call(c, 'StartTransfer', { requestId: 'nodest', source: offlineSource(pool.baseDevId) }),
      grpc.status.INVALID_ARGUMENT,
      /destination\.receiver_address and destination\.target are required/,
    );
    await refused(
      call(c, 'StartTransfer', {
        requestId: 'slow-1',
        source: offlineSource(pool.baseDevId),
        destination: dest,
        options: { bandwidthLimitBytesPerSecond: 10 },
      }),
      grpc.status.INVALID_ARGUMENT,
      /bandwidth_limit_bytes_per_second 10: at least 1024/,
    );
    await refused(
      call(c, 'StartTransfer', { requestId: 'md5-1', source: offlineSource(pool.baseDevId), destination: dest, options: { checksum: 'md5' } }),
      grpc.status.INVALID_ARGUMENT,
      /options\.checksum "md5" must be blake3, sha256, or empty for the default/,
    );
    await refused(call(c, 'Plan', { source: offlineSource(pool.baseDevId), maxOpBytes: 2 ** 40 }), grpc.status.INVALID_ARGUMENT, /max_op_bytes/);
    await refused(call(c, 'GetTransfer', { transferId: 'x'.repeat(100_000) }), grpc.status.NOT_FOUND, /no transfer/);
    assert.equal((await call<{ transfers: Info[] }>(c, 'ListTransfers', {})).transfers.length, before, 'no transfer was started');
  } finally {
    c.close();
  }
});
