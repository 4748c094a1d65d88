/**
 * The errors a script meets from `thinship send --to` and the gRPC client:
 * real gRPC on 127.0.0.1 with certificates made here (openssl), the offline
 * demo pool as the source, the bundled CLI where the exit status matters.
 * A refused client certificate or an untrusted receiver is exit 13 at once,
 * named; nobody at the address is a short wait and exit 15; a handshake cut
 * short (a receiver restarting) is retried; a receiver at its transfer limit
 * is retried; a receiver-side abort or takeover has its own exit 16; a
 * certificate and key that are not a pair is a usage error; SIGINT/SIGTERM
 * say how to resume; no DEP0123 warning for an IP address; the default
 * transfer id ignores how the pool path is spelled and includes the identity.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, symlinkSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createServer, type Server, type AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import type { ServerHttp2Session } from 'node:http2';
import type { DemoPool } from '../../src/thin/demo-pool.js';
import { planSend, type SendPlan, type SourceSpec } from '../../src/thin/planner.js';
import { openSourceReader, type VolumeReader } from '../../src/sender/volume-reader.js';
import { parseReceiverConfig, type ReceiverConfig } from '../../src/rpc/server-config.js';
import { startReceiver, type RunningReceiver } from '../../src/rpc/server.js';
import {
  ReceiverClient,
  sendPlanOverGrpc,
  defaultTransferId,
  wireVolumeIds,
  type GrpcSendOptions,
  type GrpcSendResult,
  type SendEvent,
} from '../../src/rpc/client.js';
import { startDelayRelay, type DelayRelay } from '../../src/testing/delay-relay.js';
import { ThinshipError } from '../../src/errors.js';
import { runCli, startCli, type CliResult } from '../helpers/cli.js';
import { demoFixture, assertSameImage, readImage, rejects, waitFor as pollFor, type TestCerts } from './helpers.js';
import { beginMsg, gatedAt } from './receiver-helpers.js';

let dir: string;
let targets: string;
let pool: DemoPool;
let img1: Buffer;
let certs: TestCerts;
let rx: RunningReceiver;
let address: string;
let clientA: ReceiverClient;

async function receiverConfig(name: string, extra: Record<string, unknown> = {}): Promise<ReceiverConfig> {
  return parseReceiverConfig(
    { tls: certs.server, stateDir: join(dir, `state-${name}`), identities: { 'sender-a': { directories: [targets] } }, ...extra },
    join(dir, `${name}.json`),
  );
}

before(async () => {
  ({ dir, pool, img1, certs } = await demoFixture('thinship-clerr-'));
  targets = join(dir, 'targets');
  rx = await startReceiver({ listen: '127.0.0.1:0', config: await receiverConfig('main') });
  address = `127.0.0.1:${rx.port}`;
  clientA = await ReceiverClient.connect({ address, tls: certs.clientA, serverName: 'localhost' });
});

after(async () => {
  clientA?.close();
  await rx?.close();
  rmSync(dir, { recursive: true, force: true });
});

const spec = (snap: number, base?: number, metadataPath = pool.metadataPath, dataPath = pool.dataPath): SourceSpec => ({
  kind: 'offline',
  metadataPath,
  dataPath,
  snapDevId: snap,
  baseDevId: base,
  volumeSizeBytes: pool.volumeSizeBytes,
});

async function withPlan<T>(s: SourceSpec, fn: (p: SendPlan) => Promise<T>): Promise<T> {
  const p = await planSend(s, { withMappings: true });
  try {
    return await fn(p);
  } finally {
    await p.close();
  }
}

async function send(
  client: ReceiverClient,
  target: string,
  o: Partial<GrpcSendOptions> & { wrapReader?: (r: VolumeReader) => VolumeReader } = {},
): Promise<GrpcSendResult> {
  return withPlan(spec(pool.baseDevId), async (p) => {
    const opened = await openSourceReader(p);
    const reader = o.wrapReader ? o.wrapReader(opened) : opened;
    try {
      return await sendPlanOverGrpc(client, p, reader, { target, maxAttempts: 4, retryDelayMs: 50, ...o });
    } finally {
      await reader.close();
    }
  });
}

/** The shared poll, with this file's bound (CLI processes start slowly under load). */
const waitFor = (cond: () => Promise<boolean>, what: string, ms = 20_000) => pollFor(cond, what, ms);

/** `thinship send … --to` of the base device, mTLS files from the test CA (sender-a unless given). */
function sendArgs(to: string, target: string, extra: string[] = [], tls: string[] = ['--tls-dir', join(dir, 'certs')]): string[] {
  return [
    'send',
    '--pool-metadata',
    pool.metadataPath,
    '--pool-data',
    pool.dataPath,
    '--volume-size',
    String(pool.volumeSizeBytes),
    '--to',
    to,
    '--target',
    target,
    ...tls,
    '--json',
    ...extra,
    String(pool.baseDevId),
  ];
}

async function timedCli(args: string[]): Promise<CliResult & { seconds: number }> {
  const t0 = performance.now();
  const r = await runCli(args);
  return { ...r, seconds: (performance.now() - t0) / 1000 };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

// ---- TLS refusals ---------------------------------------------------------------------

test('an expired client certificate: exit 13 within seconds (not 90 s of retries), naming the certificate', async () => {
  const target = join(targets, 'expired.img');
  const r = await timedCli(
    sendArgs(
      address,
      target,
      ['--server-name', 'localhost', '--retries', '9'],
      ['--ca', certs.expired.ca, '--cert', certs.expired.cert, '--key', certs.expired.key],
    ),
  );
  assert.equal(r.code, 13, r.stderr);
  assert.match(
    r.stderr,
    /the receiver at 127\.0\.0\.1:\d+ refused our client certificate "sender-a" \(.*expired\.crt\): .*it expired on Feb {2}1 00:00:00 2020 GMT/,
  );
  assert.doesNotMatch(r.stderr, /retrying/);
  assert.ok(r.seconds < 20, `took ${r.seconds.toFixed(1)} s`);
  assert.equal(existsSync(target), false);
});

test('a client certificate from an unknown CA: exit 13, naming it; the receiver certificate from an unknown CA or for another name: exit 13', async () => {
  const target = join(targets, 'foreign.img');
  const r = await timedCli(
    sendArgs(address, target, ['--server-name', 'localhost'], ['--ca', certs.foreign.ca, '--cert', certs.foreign.cert, '--key', certs.foreign.key]),
  );
  assert.equal(r.code, 13, r.stderr);
  assert.match(r.stderr, /refused our client certificate "sender-a" .*it is not signed by a CA in .*ca\.crt \(its issuer is CN=foreign CA\)/);
  assert.ok(r.seconds < 20, `took ${r.seconds.toFixed(1)} s`);
  const untrusted = await timedCli(
    sendArgs(address, target, ['--server-name', 'localhost'], ['--ca', certs.foreignCa, '--cert', certs.clientA.cert, '--key', certs.clientA.key]),
  );
  assert.equal(untrusted.code, 13, untrusted.stderr);
  assert.match(untrusted.stderr, /the receiver's certificate is not trusted: self-signed certificate in certificate chain/);
  const wrongName = await timedCli(sendArgs(address, target, ['--server-name', 'wrong.example']));
  assert.equal(wrongName.code, 13, wrongName.stderr);
  assert.match(wrongName.stderr, /the receiver's certificate is not trusted: Hostname\/IP does not match certificate's altnames: Host: wrong\.example/);
  assert.equal(existsSync(target), false);
});

test('a receiver that answers with a TLS alert (OpenSSL s_server): the alert is named, exit class UNAUTHENTICATED', async (t) => {
  const srv = spawn(
    'openssl',
    [
      's_server',
      '-accept',
      '127.0.0.1:0',
      '-cert',
      certs.server.cert,
      '-key',
      certs.server.key,
      '-CAfile',
      certs.server.ca,
      '-Verify',
      '1',
      '-verify_return_error',
      '-alpn',
      'h2',
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  t.after(() => {
    srv.kill('SIGKILL');
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`openssl s_server did not start: ${out}`)), 10_000);
    srv.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /ACCEPT 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  for (const [files, re] of [
    [certs.expired, /refused our client certificate "sender-a" .*: certificate expired \(TLS alert 45\)/],
    [certs.foreign, /: unknown ca \(TLS alert 48\)/],
  ] as const) {
    const c = await ReceiverClient.connect({ address: `127.0.0.1:${port}`, tls: files, serverName: 'localhost' });
    try {
      const e = await rejects(c.getTransferState('x'), 'UNAUTHENTICATED', re);
      assert.equal(e.retryable, false);
    } finally {
      c.close();
    }
  }
});

test('a connection dropped before the TLS handshake completes (a receiver restarting) is retried, then the send completes', async () => {
  // Something that accepts and closes at once, then a real receiver on that port.
  const sockets = new Set<import('node:net').Socket>();
  const dropper: Server = createServer((s) => {
    sockets.add(s);
    s.destroy();
  });
  await new Promise<void>((r) => dropper.listen(0, '127.0.0.1', r));
  const port = (dropper.address() as AddressInfo).port;
  const c = await ReceiverClient.connect({ address: `127.0.0.1:${port}`, tls: certs.clientA, serverName: 'localhost' });
  let rx2: RunningReceiver | undefined;
  const retries: ThinshipError[] = [];
  let swapping: Promise<void> | undefined;
  try {
    const target = join(targets, 'dropped.img');
    const r = await send(c, target, {
      maxAttempts: 6,
      retryDelayMs: 100,
      onEvent: (e: SendEvent) => {
        if (e.type !== 'retry') return;
        retries.push(e.error);
        // the retry is being waited for: bring up the real receiver now
        swapping ??= new Promise<void>((res) => dropper.close(() => res())).then(async () => {
          rx2 = await startReceiver({ listen: `127.0.0.1:${port}`, config: await receiverConfig('dropped') });
        });
      },
    });
    await swapping;
    assert.equal(r.state.status, 'TRANSFER_STATUS_COMPLETE');
    assert.ok(retries.length >= 1);
    assert.equal(retries[0]!.code, 'UNAVAILABLE', retries[0]!.message);
    assert.match(retries[0]!.message, /closed the connection before the TLS handshake completed/);
    assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after a dropped first connection');
  } finally {
    c.close();
    dropper.close();
    await swapping?.catch(() => undefined);
    await rx2?.close();
  }
});

// ---- nobody there -----------------------------------------------------------------------

test('nothing listening at --to: exit 15 after a short wait, naming the address and the error, without a resume hint', async () => {
  const port = await freePort();
  const r = await timedCli(sendArgs(`127.0.0.1:${port}`, join(targets, 'nobody.img'), ['--server-name', 'localhost']));
  assert.equal(r.code, 15, r.stderr);
  assert.match(r.stderr, new RegExp(`cannot connect to the receiver at 127\\.0\\.0\\.1:${port}: connection refused`));
  assert.match(r.stderr, /nothing was sent/);
  assert.doesNotMatch(r.stderr, /resume/);
  assert.ok(r.seconds > 3 && r.seconds < 25, `gave up after ${r.seconds.toFixed(1)} s (about 5 s expected)`);
});

test('a name that does not resolve: UNAVAILABLE naming it, after the connect wait only', async () => {
  const c = await ReceiverClient.connect({ address: 'nonexistent.invalid:7443', tls: certs.clientA });
  try {
    const t0 = Date.now();
    await rejects(
      send(c, join(targets, 'nxdomain.img'), { connectWaitMs: 1000, maxAttempts: 10 }),
      'UNAVAILABLE',
      /cannot connect to the receiver at nonexistent\.invalid:7443: name not found.*nothing was sent/,
    );
    assert.ok(Date.now() - t0 < 8000, `${Date.now() - t0} ms`);
  } finally {
    c.close();
  }
});

// ---- the receiver says no, or stops us ------------------------------------------------------

test('a receiver at its transfer limit (TRANSFER_BUSY, retryable) is retried with back-off until it has room', async () => {
  const rx2 = await startReceiver({ listen: '127.0.0.1:0', config: await receiverConfig('limit', { maxActiveTransfers: 1 }) });
  const c = await ReceiverClient.connect({ address: `127.0.0.1:${rx2.port}`, tls: certs.clientA, serverName: 'localhost' });
  try {
    const holder = c.applyStream();
    holder.call.write(beginMsg('holder', join(targets, 'holder.img')));
    await waitFor(async () => (await c.getTransferState('holder'))?.active === true, 'the holder to run');
    const retries: ThinshipError[] = [];
    const r = await send(c, join(targets, 'limit.img'), {
      maxAttempts: 10,
      retryDelayMs: 100,
      onEvent: (e) => {
        if (e.type === 'retry') {
          retries.push(e.error);
          if (retries.length === 2) holder.call.cancel();
        }
      },
    });
    assert.equal(r.state.status, 'TRANSFER_STATUS_COMPLETE');
    assert.ok(retries.length >= 2, `${retries.length} retries`);
    assert.equal(retries[0]!.code, 'TRANSFER_BUSY');
    assert.equal(retries[0]!.retryable, true, "the receiver's retryable flag reached the client");
    assert.match(retries[0]!.message, /already running 1 transfers/);
    assertSameImage(readImage(join(targets, 'limit.img'), pool.volumeSizeBytes), img1, 'after waiting for room');
  } finally {
    c.close();
    await rx2.close();
  }
});

test('a takeover by a newer call stops the older sender with TRANSFER_ABORTED (exit 16), not ABORTED (130, SIGINT)', async () => {
  const target = join(targets, 'takeover.img');
  const gate = gatedAt(8 * 1024 * 1024);
  const older = send(clientA, target, { transferId: 'tk-1', wrapReader: gate.wrap });
  older.catch(() => undefined);
  try {
    await waitFor(async () => (await clientA.getTransferState('tk-1'))?.active === true, 'tk-1 to run');
    const newer = await send(clientA, target, { transferId: 'tk-1' });
    assert.equal(newer.state.status, 'TRANSFER_STATUS_COMPLETE');
    gate.release(); // the older sender learns of the takeover when it next writes
    const e = await rejects(older, 'TRANSFER_ABORTED', /taken over by a newer call/);
    assert.equal(e.retryable, false);
    const { exitCodeOf } = await import('../../src/cli/exit-codes.js');
    assert.equal(exitCodeOf(e), 16);
  } finally {
    gate.release();
  }
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after the takeover');
});

/** A slow link in front of the main receiver: a send through it stays active for seconds. */
async function slowLink(): Promise<DelayRelay> {
  return startDelayRelay({ listenHost: '127.0.0.1', listenPort: 0, toHost: '127.0.0.1', toPort: rx.port, delayMs: 1, rateBitsPerSecond: 16e6 });
}

test('AbortTransfer by an operator: the sender exits 16 naming the abort', async () => {
  const relay = await slowLink();
  try {
    const target = join(targets, 'operator.img');
    const { child, result } = startCli(sendArgs(`127.0.0.1:${relay.port}`, target, ['--server-name', 'localhost', '--transfer-id', 'op-1']));
    try {
      await waitFor(async () => (await clientA.getTransferState('op-1'))?.active === true, 'op-1 to run');
      const ab = await clientA.abortTransfer('op-1', 'operator test');
      assert.equal(ab.stoppedActiveStream, true);
      const r = await result;
      assert.equal(r.code, 16, r.stderr);
      assert.match(r.stderr, /transfer op-1 was aborted by AbortTransfer \(operator test\)/);
    } finally {
      child.kill('SIGKILL');
    }
  } finally {
    await relay.close();
  }
});

for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  test(`${sig} of send --to: exit ${code}, says the transfer is resumable and how; the same command resumes it`, async () => {
    const relay = await slowLink();
    const target = join(targets, `${sig}.img`);
    // The id the CLI derives (default options): the test knows it only from the same inputs.
    const id = await withPlan(spec(pool.baseDevId), async (p) => defaultTransferId(p, target, 'sender-a'));
    try {
      const args = sendArgs(`127.0.0.1:${relay.port}`, target, ['--server-name', 'localhost']);
      const { child, result } = startCli(args);
      try {
        await waitFor(async () => (await clientA.getTransferState(id))?.active === true, `${id} to run`);
        child.kill(sig);
        const r = await result;
        assert.equal(r.signal, null, r.stderr);
        assert.equal(r.code, code, r.stderr);
        assert.match(r.stderr, new RegExp(`interrupted by ${sig}: transfer ${id} of full .* is resumable: run the same command again to resume it`));
      } finally {
        child.kill('SIGKILL');
      }
    } finally {
      await relay.close();
    }
    await waitFor(async () => (await clientA.getTransferState(id))?.active === false, `${id} to stop on the receiver`);
    assert.equal((await clientA.getTransferState(id))!.status, 'TRANSFER_STATUS_IN_PROGRESS');
    // the same command (straight to the receiver this time: the id does not depend on the address)
    const again = await runCli(sendArgs(address, target, ['--server-name', 'localhost']));
    assert.equal(again.code, 0, again.stderr);
    const j = JSON.parse(again.stdout) as { transferId: string; state: { status: string } };
    assert.equal(j.transferId, id);
    assert.equal(j.state.status, 'TRANSFER_STATUS_COMPLETE');
    assertSameImage(readImage(target, pool.volumeSizeBytes), img1, `after ${sig} and the re-run`);
  });
}

test('after an attempt that delivered data the retry count and delay start afresh: three cuts with --retries 1 still complete', async () => {
  const sessions: ServerHttp2Session[] = [];
  const rx3 = await startReceiver({
    listen: '127.0.0.1:0',
    config: await receiverConfig('cuts', { checkpointIntervalBytes: 2 * 1024 * 1024 }),
    onHttp2Session: (x) => sessions.push(x),
  });
  const c = await ReceiverClient.connect({ address: `127.0.0.1:${rx3.port}`, tls: certs.clientA, serverName: 'localhost' });
  const watch = await ReceiverClient.connect({ address: `127.0.0.1:${rx3.port}`, tls: certs.clientA, serverName: 'localhost' });
  const state = () => watch.getTransferState('cuts-1').catch(() => undefined); // the watcher's connection is cut too
  const target = join(targets, 'cuts.img');
  const delays: number[] = [];
  // The reader holds before 8, 16 and 24 MiB until each is released: every cut finds the transfer running.
  const gates = [8, 16, 24].map((mib) => gatedAt(mib * 1024 * 1024));
  const reader = (r: VolumeReader): VolumeReader => gates.reduce((x, g) => g.wrap(x), r);
  try {
    // two attempts in a row at most: without the reset the second cut ends the send
    const sending = send(c, target, {
      transferId: 'cuts-1',
      maxAttempts: 2,
      retryDelayMs: 300,
      wrapReader: reader,
      onEvent: (e) => {
        if (e.type === 'retry') delays.push(e.delayMs);
      },
    });
    sending.catch(() => undefined);
    let durable = 0;
    for (const [i, gate] of gates.entries()) {
      // cut the connection once the receiver made this attempt's progress durable
      await waitFor(
        async () => {
          const st = await state();
          return st?.active === true && st.durableOffsetBytes > durable;
        },
        `progress before cut ${i + 1}`,
      );
      for (const x of sessions.splice(0)) x.destroy();
      await waitFor(async () => (await state())?.active === false, `the receiver to see cut ${i + 1}`);
      durable = (await state())!.durableOffsetBytes;
      gate.release();
    }
    const r = await sending;
    assert.equal(r.state.status, 'TRANSFER_STATUS_COMPLETE');
    assert.equal(r.startOffsets.length, 4, `starts: ${r.startOffsets.join(', ')}`);
    assert.deepEqual(delays, [300, 300, 300], 'each retry after progress waits the first delay');
    assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'after three cuts');
  } finally {
    for (const g of gates) g.release();
    c.close();
    watch.close();
    await rx3.close();
  }
});

// ---- local mistakes -----------------------------------------------------------------------

test('a client certificate and key that are not a pair: usage error (exit 2) naming both files, before any connection', async () => {
  const key = join(dir, 'certs', 'client-sender-b.key');
  const r = await runCli(sendArgs('127.0.0.1:9', join(targets, 'pair.img'), [], ['--ca', certs.clientA.ca, '--cert', certs.clientA.cert, '--key', key]));
  assert.equal(r.code, 2, r.stderr);
  assert.ok(r.stderr.includes(`the client certificate ${certs.clientA.cert} and the key ${key} are not a pair`), r.stderr);
  assert.doesNotMatch(r.stderr, /error:[0-9A-F]{8}:/, 'no raw OpenSSL string');
});

test('send --to IP:PORT without --server-name: no DEP0123 warning, the certificate is still checked against the address', async () => {
  const target = join(targets, 'by-ip.img');
  const r = await runCli(sendArgs(address, target));
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /DEP0123|DeprecationWarning/);
  assertSameImage(readImage(target, pool.volumeSizeBytes), img1, 'sent by address');
  // the address is what is verified: a certificate without it is refused
  const other = await makeTestCertsFor(['localhost']);
  const rx2 = await startReceiver({
    listen: '127.0.0.1:0',
    config: await parseReceiverConfig(
      { tls: other.server, stateDir: join(dir, 'state-ip'), identities: { 'sender-a': { directories: [targets] } } },
      join(dir, 'ip.json'),
    ),
  });
  try {
    const c = await ReceiverClient.connect({ address: `127.0.0.1:${rx2.port}`, tls: other.clientA });
    try {
      await rejects(c.getTransferState('x'), 'UNAUTHENTICATED', /not trusted: .*IP: 127\.0\.0\.1 is not in the cert's list/);
    } finally {
      c.close();
    }
  } finally {
    await rx2.close();
  }
});

async function makeTestCertsFor(serverNames: string[]): Promise<TestCerts> {
  const { makeCertificates } = await import('../../src/rpc/certs.js');
  const d = join(dir, `certs-${serverNames.join('-')}`);
  const s = await makeCertificates({ dir: d, serverNames, clientNames: ['sender-a'], days: 3 });
  const files = { ca: s.ca, cert: s.clients[0]!.cert, key: s.clients[0]!.key };
  return { ...certs, dir: d, server: { ca: s.ca, ...s.server }, clientA: files };
}

test('the default transfer id: the same however the pool path is spelled; different for another client identity', async () => {
  const link = join(dir, 'pool-link');
  symlinkSync(join(dir, 'pool'), link);
  const target = join(targets, 'id.img');
  const rel = (p: string) => relative(process.cwd(), p);
  const spellings = [
    spec(pool.snapDevId, pool.baseDevId),
    spec(pool.snapDevId, pool.baseDevId, rel(pool.metadataPath), rel(pool.dataPath)),
    spec(pool.snapDevId, pool.baseDevId, join(link, relative(join(dir, 'pool'), pool.metadataPath)), join(link, relative(join(dir, 'pool'), pool.dataPath))),
  ];
  const ids: string[] = [];
  const wire: string[] = [];
  for (const s of spellings) {
    await withPlan(s, async (p) => {
      ids.push(defaultTransferId(p, target, 'sender-a'));
      wire.push(JSON.stringify(wireVolumeIds(p)));
    });
  }
  assert.equal(new Set(ids).size, 1, ids.join(' '));
  assert.equal(new Set(wire).size, 1, `the source and base ids in Begin too: ${wire.join(' ')}`);
  const otherIdentity = await withPlan(spellings[0]!, async (p) => defaultTransferId(p, target, 'sender-b'));
  assert.notEqual(otherIdentity, ids[0]);
  // the identity a client presents: its certificate's CN, "anonymous" without TLS
  assert.equal(clientA.identity, 'sender-a');
  const b = await ReceiverClient.connect({ address, tls: certs.clientB, serverName: 'localhost' });
  const plain = await ReceiverClient.connect({ address, insecure: true });
  assert.equal(b.identity, 'sender-b');
  assert.equal(plain.identity, 'anonymous');
  b.close();
  plain.close();
});
