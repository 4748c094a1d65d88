/**
 * The receiver's operator endpoints over real sockets: a transfer over mTLS is
 * counted in /metrics (bytes written, records, transfers by outcome, a
 * checkpoint and a commit timed, the active gauge back at 0), a refused TLS
 * handshake by its reason class, /healthz and /readyz answer without a client
 * certificate, and /readyz names an unwritable state directory.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDemoPool, type DemoPool } from '../../src/thin/demo-pool.js';
import { makeTestCerts, type TestCerts } from './helpers.js';
import { startTestReceiver, sendDemo, type TestReceiver } from './receiver-helpers.js';

let dir: string;
let certs: TestCerts;
let pool: DemoPool;
let rx: TestReceiver;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-metrics-'));
  mkdirSync(join(dir, 'targets'));
  certs = await makeTestCerts(join(dir, 'certs'));
  pool = await createDemoPool(join(dir, 'pool'));
  rx = await startTestReceiver(
    certs,
    { stateDir: join(dir, 'state'), metricsListen: '127.0.0.1:0', identities: { 'sender-a': { directories: [join(dir, 'targets')] } } },
    join(dir, 'rx.json'),
  );
});

after(async () => {
  await rx?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function get(path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${rx.rx.metricsPort}${path}`);
  return { status: r.status, body: await r.text() };
}

/** The value of one sample line ("name{labels} value"), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('a transfer is counted: bytes written, records, outcome, checkpoint and commit timings; active back to 0', async () => {
  assert.ok(rx.rx.metricsPort, 'the metrics listener is up');
  const before = await get('/metrics');
  assert.equal(sample(before.body, 'thinship_receiver_transfers_total{outcome="complete",code=""}'), undefined, 'nothing counted yet');
  const c = await rx.client(certs.clientA);
  const r = await sendDemo(pool, c, join(dir, 'targets', 'm.img'), pool.baseDevId);
  const m = (await get('/metrics')).body;
  assert.equal(sample(m, 'thinship_receiver_transfers_total{outcome="complete",code=""}'), 1);
  assert.equal(sample(m, 'thinship_receiver_written_bytes_total'), r.dataBytes, 'bytes written = the data sent');
  assert.equal(sample(m, 'thinship_receiver_wire_bytes_total'), r.payloadBytes, 'wire bytes = the payload sent');
  assert.ok((sample(m, 'thinship_receiver_records_total{kind="data"}') ?? 0) > 0);
  assert.ok((sample(m, 'thinship_receiver_checkpoint_duration_seconds_count') ?? 0) >= 2, 'the first and the final checkpoint');
  assert.equal(sample(m, 'thinship_receiver_commit_duration_seconds_count'), 1);
  assert.equal(sample(m, 'thinship_receiver_active_transfers'), 0);
  assert.equal(sample(m, 'thinship_receiver_resumes_total'), 0);
  assert.equal(sample(m, 'thinship_receiver_decode_queue_depth'), 0, 'no record left in the decode workers');
});

test('a refused TLS handshake is counted by reason class', async () => {
  const c = await rx.client(certs.foreign);
  await assert.rejects(c.getTransferState('x'));
  const m = (await get('/metrics')).body;
  assert.ok(
    (sample(m, 'thinship_receiver_tls_handshake_failures_total{reason="unknown_ca"}') ?? 0) >= 1,
    m
      .split('\n')
      .filter((l) => l.includes('tls'))
      .join('\n'),
  );
});

test('/healthz and /readyz need no client certificate; /readyz names an unwritable state directory', async () => {
  assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
  assert.equal((await get('/readyz')).status, 200);
  // Root may write a directory whatever its mode: take the directory away instead.
  const state = join(dir, 'state');
  rmSync(state, { recursive: true, force: true });
  const r = await get('/readyz');
  assert.equal(r.status, 503);
  assert.match(r.body, /state directory .*state is not writable \(ENOENT\)/);
  mkdirSync(state);
  chmodSync(state, 0o700);
  assert.equal((await get('/readyz')).status, 200);
});
