/**
 * The receiver's per-identity maxBytesPerSecond over real gRPC with mTLS: a
 * transfer of an identity with a limit cannot arrive faster than the limit
 * plus one chunk (a lower bound on its time that does not depend on machine
 * load), is not absurdly slower either (a generous upper bound), and shows the
 * limit in its log lines and the wait in /metrics. The rate's steadiness
 * (±5 % over ≥ 10 s) is measured by bench/bwlimit-bench.ts, not asserted here.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFlatPool, type FlatPool } from '../helpers/flat-pool.js';
import { planSend } from '../../src/thin/planner.js';
import { openSourceReader } from '../../src/sender/volume-reader.js';
import { sendPlanOverGrpc } from '../../src/rpc/client.js';
import { parseReceiverConfig } from '../../src/rpc/server-config.js';
import { BANDWIDTH_BURST_BYTES } from '../../src/receiver/transfers.js';
import { makeTestCerts, type TestCerts } from './helpers.js';
import { startTestReceiver, type TestReceiver } from './receiver-helpers.js';

const MiB = 1024 * 1024;
const LIMIT = 2 * MiB;
const CHUNK = 256 * 1024;
let dir: string;
let certs: TestCerts;
let flat: FlatPool;
let rx: TestReceiver;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-rxbw-'));
  mkdirSync(join(dir, 'targets'));
  certs = await makeTestCerts(join(dir, 'certs'));
  flat = createFlatPool(dir, 8 * MiB);
  rx = await startTestReceiver(
    certs,
    {
      stateDir: join(dir, 'state'),
      maxChunkBytes: CHUNK,
      metricsListen: '127.0.0.1:0',
      identities: { 'sender-a': { directories: [join(dir, 'targets')], maxBytesPerSecond: LIMIT }, 'sender-b': { directories: [join(dir, 'targets')] } },
    },
    join(dir, 'rx.json'),
  );
});

after(async () => {
  await rx?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function send(name: 'clientA' | 'clientB', target: string): Promise<{ seconds: number; payloadBytes: number }> {
  const p = await planSend(
    { kind: 'offline', metadataPath: flat.metadataPath, dataPath: flat.dataPath, snapDevId: flat.devId, volumeSizeBytes: flat.volumeSizeBytes },
    { withMappings: true, maxOpBytes: CHUNK },
  );
  try {
    const reader = await openSourceReader(p);
    try {
      const t0 = performance.now();
      const r = await sendPlanOverGrpc(await rx.client(certs[name]), p, reader, { target: join(dir, 'targets', target), compress: false, maxAttempts: 1 });
      return { seconds: (performance.now() - t0) / 1000, payloadBytes: r.payloadBytes };
    } finally {
      await reader.close();
    }
  } finally {
    await p.close();
  }
}

test('an identity with maxBytesPerSecond receives at most the limit plus its burst; the limit is logged and the wait counted', async () => {
  const r = await send('clientA', 'limited.img');
  assert.equal(r.payloadBytes, 8 * MiB, 'incompressible, sent raw');
  // Everything had arrived by the response: at most LIMIT × t + the burst + one record can have.
  const floor = (r.payloadBytes - BANDWIDTH_BURST_BYTES - CHUNK) / LIMIT;
  assert.ok(r.seconds >= floor * 0.97, `took ${r.seconds.toFixed(2)} s; the limit allows no less than ${floor.toFixed(2)} s`);
  assert.ok(r.seconds < floor * 4 + 20, `took ${r.seconds.toFixed(2)} s: far slower than the limit`);
  const begin = rx.lines.find((l) => l.msg === 'transfer begin' && l.identity === 'sender-a');
  assert.equal(begin?.maxBytesPerSecond, LIMIT);
  const done = rx.lines.find((l) => l.msg === 'transfer complete' && l.identity === 'sender-a');
  assert.equal(done?.maxBytesPerSecond, LIMIT);
  const m = await (await fetch(`http://127.0.0.1:${rx.rx.metricsPort}/metrics`)).text();
  const waited = Number(/^thinship_receiver_bandwidth_limit_wait_seconds_total (\S+)$/m.exec(m)?.[1]);
  assert.ok(waited > floor / 2, `waited ${waited} s for the limit`);
});

test('another identity of the same receiver, without maxBytesPerSecond, has no limit', async () => {
  const before = rx.lines.length;
  await send('clientB', 'unlimited.img');
  const begin = rx.lines.slice(before).find((l) => l.msg === 'transfer begin' && l.identity === 'sender-b');
  assert.ok(begin && !('maxBytesPerSecond' in begin), 'no limit logged for sender-b');
});

test('maxBytesPerSecond below 64 KiB/s or not an integer is a config error naming the identity', async () => {
  for (const bad of [1000, 1.5, '1M']) {
    await assert.rejects(
      parseReceiverConfig({ identities: { x: { maxBytesPerSecond: bad } } }, join(dir, 'bad.json')),
      /identities\["x"\]\.maxBytesPerSecond must be an integer >= 65536/,
    );
  }
});
