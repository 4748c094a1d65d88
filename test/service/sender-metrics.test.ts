/**
 * The sender daemon's operator endpoints (`sender-serve --metrics-listen`,
 * config metricsListen) over real sockets: scraped while a transfer is sending
 * (active and queued gauges, bytes sent so far) and after it and a refused one
 * ended (transfers by outcome and error code, bytes sent = the payload, gauges
 * back at 0, process metrics); /healthz and /readyz without a certificate.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createFlatPool, type FlatPool } from '../helpers/flat-pool.js';
import { parseSenderConfig, type SenderConfig } from '../../src/service/sender-config.js';
import { startSenderServer, type RunningSender } from '../../src/rpc/sender-server.js';
import type { Caller, TransferInfo } from '../../src/service/transfer-manager.js';
import { makeTestCerts, waitFor, type TestCerts } from './helpers.js';
import { startTestReceiver, type TestReceiver } from './receiver-helpers.js';

const MiB = 1024 * 1024;
let dir: string;
let certs: TestCerts;
let flat: FlatPool;
let rx: TestReceiver;
let sender: RunningSender;
let config: SenderConfig;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-sendermetrics-'));
  mkdirSync(join(dir, 'targets'));
  mkdirSync(join(dir, 'pools'));
  certs = await makeTestCerts(join(dir, 'certs'));
  flat = createFlatPool(join(dir, 'pools'), 8 * MiB);
  rx = await startTestReceiver(
    certs,
    { stateDir: join(dir, 'rx-state'), identities: { 'sender-a': { directories: [join(dir, 'targets')] } } },
    join(dir, 'rx.json'),
  );
  config = await parseSenderConfig(
    {
      tls: certs.server,
      receiverTls: certs.clientA,
      stateDir: join(dir, 'sender-state'),
      maxActiveTransfers: 1,
      metricsListen: '127.0.0.1:0',
      identities: {
        'sender-a': {
          sources: { offlineDirectories: [join(dir, 'pools')] },
          // The second destination is one the receiver refuses (sender-a may not write there).
          destinations: [
            { receiver: rx.address, target: `${join(dir, 'targets')}/*` },
            { receiver: rx.address, target: `${join(dir, 'elsewhere')}/*` },
          ],
        },
      },
    },
    join(dir, 'sender.json'),
  );
  sender = await startSenderServer({ listen: '127.0.0.1:0', config, log: pino({ level: 'silent' }), lockDir: join(dir, 'locks'), retryDelayMs: 100 });
});

after(async () => {
  await sender?.close();
  await rx?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function get(path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${sender.metricsPort}${path}`);
  return { status: r.status, body: await r.text() };
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

const caller = (): Caller => ({ owner: 'sender-a', rules: [config.identities.get('sender-a')!] });

function start(requestId: string, target: string, bandwidthLimitBytesPerSecond = 0): Promise<TransferInfo> {
  return sender.manager.start(caller(), {
    requestId,
    source: { snapshot: String(flat.devId), offlinePool: { metadataPath: flat.metadataPath, dataPath: flat.dataPath, volumeSizeBytes: flat.volumeSizeBytes } },
    destination: { receiverAddress: rx.address, target },
    options: { noCompress: true, bandwidthLimitBytesPerSecond },
  });
}

test('scraped during a transfer (active, queued, bytes so far) and after (outcomes with codes, bytes sent, gauges at 0)', async () => {
  assert.ok(sender.metricsPort, 'the metrics listener is up');
  // 8 MiB at 1 MiB/s: the first transfer sends for seconds; the second waits for the pool and the one slot.
  const slow = await start('slow', join(dir, 'targets', 'slow.img'), MiB);
  const queued = await start('queued', join(dir, 'targets', 'queued.img'));
  await waitFor(() => sender.manager.get(caller(), slow.transferId).doneBytes > 0, 'the slow transfer sends');
  const during = (await get('/metrics')).body;
  assert.equal(sample(during, 'thinship_sender_active_transfers'), 1);
  assert.equal(sample(during, 'thinship_sender_queued_transfers'), 1);
  assert.ok((sample(during, 'thinship_sender_sent_bytes_total') ?? 0) > 0, 'bytes counted while sending');
  assert.equal(sample(during, 'thinship_sender_transfers_total{outcome="done",code=""}'), undefined, 'nothing ended yet');
  assert.equal(sender.manager.get(caller(), slow.transferId).state, 'sending', 'scraped while it was sending');

  const refused = await start('refused', join(dir, 'elsewhere', 'x.img'));
  const final = (id: string) => ['done', 'failed', 'cancelled'].includes(sender.manager.get(caller(), id).state);
  await waitFor(() => final(slow.transferId) && final(queued.transferId) && final(refused.transferId), 'all three ended', 60_000);
  assert.equal(sender.manager.get(caller(), refused.transferId).errorCode, 'PERMISSION_DENIED');
  const m = (await get('/metrics')).body;
  assert.equal(sample(m, 'thinship_sender_transfers_total{outcome="done",code=""}'), 2);
  assert.equal(sample(m, 'thinship_sender_transfers_total{outcome="failed",code="PERMISSION_DENIED"}'), 1);
  // Two incompressible volumes, sent raw, and whatever the refused one had handed to gRPC before its
  // refusal came back: the stream does not wait for the receiver's answer to Begin, so on a loaded
  // machine a few chunks go out first (its doneBytes counts them, as the counter does).
  const refusedSent = sender.manager.get(caller(), refused.transferId).doneBytes;
  assert.ok(refusedSent <= 8 * MiB, `the refused transfer counted ${refusedSent} bytes`);
  assert.equal(sample(m, 'thinship_sender_sent_bytes_total'), 2 * 8 * MiB + refusedSent, `sent bytes (the refused transfer sent ${refusedSent})`);
  assert.equal(sample(m, 'thinship_sender_active_transfers'), 0);
  assert.equal(sample(m, 'thinship_sender_queued_transfers'), 0);
  assert.equal(sample(m, 'thinship_sender_compress_queue_depth'), 0);
  assert.equal(sample(m, 'thinship_sender_retries_total'), 0);
  assert.ok((sample(m, 'thinship_sender_process_cpu_seconds_total') ?? 0) > 0, 'process metrics');
});

test('/healthz and /readyz answer without a client certificate; /readyz names an unwritable state directory', async () => {
  assert.deepEqual(await get('/healthz'), { status: 200, body: 'ok\n' });
  assert.equal((await get('/readyz')).status, 200);
  const state = join(dir, 'sender-state');
  rmSync(state, { recursive: true, force: true });
  const r = await get('/readyz');
  assert.equal(r.status, 503);
  assert.match(r.body, /state directory .*sender-state is not writable \(ENOENT\)/);
  mkdirSync(state);
  assert.equal((await get('/readyz')).status, 200);
});
