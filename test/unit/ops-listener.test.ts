/**
 * The operator's HTTP listener over real loopback sockets: Prometheus text on
 * /metrics with the receiver's metric names and the values counted, /healthz,
 * /readyz following the readiness check, and clear refusals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReceiverMetrics, tlsRefusalReason } from '../../src/ops/metrics.js';
import { startOpsListener } from '../../src/ops/ops-listener.js';
import { ThinshipError } from '../../src/errors.js';

async function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string | null; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
}

test('/metrics serves the receiver metrics in the Prometheus text format, with what was counted', async () => {
  const m = createReceiverMetrics();
  const ops = await startOpsListener({ host: '127.0.0.1', port: 0, registry: m.registry, ready: async () => [] });
  try {
    m.writtenBytes.inc(1048576);
    m.records.inc({ kind: 'data' }, 3);
    m.transfers.inc({ outcome: 'failed', code: 'CHECKSUM_MISMATCH' });
    m.tlsRefusals.inc({ reason: tlsRefusalReason('CERT_HAS_EXPIRED') });
    m.activeTransfers.set(2);
    const r = await get(ops.port, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.type ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(r.body, /^thinship_receiver_written_bytes_total 1048576$/m);
    assert.match(r.body, /^thinship_receiver_records_total\{kind="data"\} 3$/m);
    assert.match(r.body, /^thinship_receiver_transfers_total\{outcome="failed",code="CHECKSUM_MISMATCH"\} 1$/m);
    assert.match(r.body, /^thinship_receiver_tls_handshake_failures_total\{reason="expired"\} 1$/m);
    assert.match(r.body, /^thinship_receiver_active_transfers 2$/m);
    assert.match(r.body, /^# TYPE thinship_receiver_checkpoint_duration_seconds histogram$/m);
    assert.match(r.body, /^thinship_receiver_process_resident_memory_bytes \d+$/m, 'process metrics');
    // Every sample name carries the prefix: nothing from prom-client's global registry leaks in.
    for (const line of r.body.split('\n')) if (line && !line.startsWith('#')) assert.match(line, /^thinship_receiver_/, line);
  } finally {
    await ops.close();
  }
});

test('two receivers in one process keep separate counts', async () => {
  const a = createReceiverMetrics();
  const b = createReceiverMetrics();
  a.resumes.inc();
  assert.match(await a.registry.metrics(), /^thinship_receiver_resumes_total 1$/m);
  assert.match(await b.registry.metrics(), /^thinship_receiver_resumes_total 0$/m);
});

test('/healthz answers; /readyz follows the readiness check and names what is missing', async () => {
  let problems = ['state directory /x is not writable (EACCES)'];
  const m = createReceiverMetrics();
  const ops = await startOpsListener({ host: '127.0.0.1', port: 0, registry: m.registry, ready: async () => problems });
  try {
    assert.deepEqual(await get(ops.port, '/healthz'), { status: 200, type: 'text/plain', body: 'ok\n' });
    const notReady = await get(ops.port, '/readyz');
    assert.equal(notReady.status, 503);
    assert.match(notReady.body, /state directory \/x is not writable \(EACCES\)/);
    problems = [];
    assert.equal((await get(ops.port, '/readyz')).status, 200);
    assert.equal((await get(ops.port, '/readyz', 'HEAD')).body, '', 'HEAD has no body');
  } finally {
    await ops.close();
  }
});

test('a readiness check that throws is "not ready", not a crash', async () => {
  const m = createReceiverMetrics();
  const ops = await startOpsListener({
    host: '127.0.0.1',
    port: 0,
    registry: m.registry,
    ready: async () => {
      throw new Error('stat failed');
    },
  });
  try {
    const r = await get(ops.port, '/readyz');
    assert.equal(r.status, 503);
    assert.match(r.body, /readiness check failed: stat failed/);
    assert.equal((await get(ops.port, '/healthz')).status, 200, 'still serving');
  } finally {
    await ops.close();
  }
});

test('unknown paths are 404 and methods other than GET/HEAD 405', async () => {
  const m = createReceiverMetrics();
  const ops = await startOpsListener({ host: '127.0.0.1', port: 0, registry: m.registry, ready: async () => [] });
  try {
    const nf = await get(ops.port, '/transfers');
    assert.equal(nf.status, 404);
    assert.match(nf.body, /try \/metrics/);
    assert.equal((await get(ops.port, '/metrics', 'POST')).status, 405);
  } finally {
    await ops.close();
  }
});

test('an address in use is a usage error naming it', async () => {
  const m = createReceiverMetrics();
  const first = await startOpsListener({ host: '127.0.0.1', port: 0, registry: m.registry, ready: async () => [] });
  try {
    await assert.rejects(startOpsListener({ host: '127.0.0.1', port: first.port, registry: m.registry, ready: async () => [] }), (e: unknown) => {
      assert.ok(e instanceof ThinshipError);
      assert.equal(e.code, 'USAGE');
      assert.match(e.message, new RegExp(`--metrics-listen 127\\.0\\.0\\.1:${first.port}: the address is in use`));
      return true;
    });
  } finally {
    await first.close();
  }
});

test('TLS refusal reasons map into a bounded set', () => {
  assert.equal(tlsRefusalReason('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'unknown_ca');
  assert.equal(tlsRefusalReason('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE'), 'no_certificate');
  assert.equal(tlsRefusalReason('ERR_SSL_WRONG_VERSION_NUMBER'), 'not_tls');
  assert.equal(tlsRefusalReason('something new'), 'other');
  assert.equal(tlsRefusalReason(undefined), 'other');
});
