/**
 * The receiver's memory under load, as a separate `thinship serve` process
 * (the bundled CLI, niced so that it, not the senders, is the bottleneck):
 * 16 concurrent transfers (two identities, 8 each) of 4 MiB incompressible
 * RAW chunks into sparse files. The receiver-wide budget (maxBufferedBytes,
 * default 256 MiB) bounds what all transfers hold at once: half for records
 * received and not yet written, half as each connection's HTTP/2 stream and
 * connection windows, which shrink with the number of open connections (a
 * waiting transfer holds up to its stream window: src/rpc/http2-window.ts).
 * Issue 11's target is 512 MiB, the bound here. Measured on a 2-core machine
 * under a load of ~8: 371-424 MiB; the same with maxBufferedBytes 8 GiB (no
 * budget: 32 MiB windows) 544 MiB, which fails, but only by 32 MiB. Ways
 * tried to widen that margin, none good yet (measured under a load of ~20):
 * 32 transfers hold 492 MiB with the budget (too close to the bound); asking
 * for 64 MiB windows made connections drop ("Connection dropped") with and
 * without the budget; a 64 MiB budget still peaked at 433 MiB (97 at start),
 * so peak RSS is not bounded by the budget alone and growth ÷ budget is no
 * sharper test.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ReceiverClient } from '../../src/rpc/client.js';
import type { ApplyStreamResponse__Output } from '../../src/rpc/proto.js';
import { makeTestCerts, writeConfig, startServe, stopServe, type TestCerts, type ServeProcess } from './helpers.js';
import { rawCall, beginMsg, sha } from './receiver-helpers.js';

let dir: string;
let certs: TestCerts;
const running: ServeProcess[] = [];
const MIB = 1024 * 1024;
const CHUNK_BYTES = 4 * MIB;
const TRANSFERS = 16;
/** Per transfer: far more than what the buffers of one transfer could hold without a budget. */
const CHUNKS_PER_TRANSFER = 40;
const RSS_LIMIT_BYTES = 512 * MIB;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'thinship-rlimits-'));
  mkdirSync(join(dir, 'targets'));
  certs = await makeTestCerts(join(dir, 'certs'));
});

after(() => {
  for (const s of running) s.child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function vmHwmBytes(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmHWM in /proc/PID/status');
  return Number(m[1]) * 1024;
}

/** One transfer: a Begin, then every chunk as fast as HTTP/2 flow control lets it go, then the End. */
async function oneTransfer(
  client: ReceiverClient,
  id: string,
  target: string,
  payloads: { data: Buffer; sum: Buffer }[],
): Promise<ApplyStreamResponse__Output> {
  const c = rawCall(client);
  const volume = CHUNKS_PER_TRANSFER * CHUNK_BYTES;
  c.write(beginMsg(id, target, { volumeSizeBytes: volume, plannedDataBytes: volume, compression: 'COMPRESSION_NONE' }));
  const { StreamDigest } = await import('../../src/stream/digest.js');
  const digest = new StreamDigest();
  for (let i = 0; i < CHUNKS_PER_TRANSFER; i++) {
    const p = payloads[i % payloads.length]!;
    digest.addData(i * CHUNK_BYTES, CHUNK_BYTES, p.sum);
    const ok = c.call.write({
      kind: 'data',
      data: { offsetBytes: i * CHUNK_BYTES, lengthBytes: CHUNK_BYTES, payload: p.data, encoding: 'ENCODING_RAW', checksum: p.sum },
    } as never);
    // A failed call never drains: its error (through the response) ends the wait, and the test.
    if (!ok) await Promise.race([new Promise<void>((r) => c.call.once('drain', () => r())), c.response]);
  }
  c.write({
    kind: 'end',
    end: { records: CHUNKS_PER_TRANSFER + 2, dataRecords: CHUNKS_PER_TRANSFER, unmapRecords: 0, dataBytes: volume, unmapBytes: 0, digest: digest.state },
  });
  c.call.end();
  return c.response;
}

test(`${TRANSFERS} concurrent transfers of 4 MiB incompressible chunks: serve's peak RSS stays under 512 MiB`, async () => {
  const cfg = writeConfig(join(dir, 'rx.json'), {
    tls: { ca: certs.server.ca, cert: certs.server.cert, key: certs.server.key },
    stateDir: join(dir, 'state'),
    identities: { 'sender-a': { directories: [join(dir, 'targets')] }, 'sender-b': { directories: [join(dir, 'targets')] } },
  });
  const s = await startServe(['--listen', '127.0.0.1:0', '--config', cfg]);
  running.push(s);
  // The receiver, not the senders, must be the bottleneck: every transfer then waits on it with
  // full windows, the case the budget is for (an unniced serve on a busy machine often keeps up).
  setPriority(s.child.pid!, 10);
  const address = `127.0.0.1:${s.port}`;
  const payloads = Array.from({ length: 4 }, () => {
    const data = randomBytes(CHUNK_BYTES);
    return { data, sum: sha(data) };
  });
  // one connection per transfer, as separate senders would have
  const clients = await Promise.all(
    Array.from({ length: TRANSFERS }, (_, i) => ReceiverClient.connect({ address, tls: i % 2 === 0 ? certs.clientA : certs.clientB, serverName: 'localhost' })),
  );
  try {
    const baseline = vmHwmBytes(s.child.pid!);
    const t0 = performance.now();
    const results = await Promise.all(clients.map((c, i) => oneTransfer(c, `mem-${i}`, join(dir, 'targets', `mem-${i}.img`), payloads)));
    const secs = (performance.now() - t0) / 1000;
    for (const r of results) assert.equal(r.state?.status, 'TRANSFER_STATUS_COMPLETE');
    const peak = vmHwmBytes(s.child.pid!);
    const totalMiB = (TRANSFERS * CHUNKS_PER_TRANSFER * CHUNK_BYTES) / MIB;
    process.stdout.write(
      `serve VmHWM ${(peak / MIB).toFixed(0)} MiB (at start ${(baseline / MIB).toFixed(0)} MiB) after ${TRANSFERS} concurrent transfers, ${totalMiB} MiB in ${secs.toFixed(1)} s\n`,
    );
    assert.equal(statSync(join(dir, 'targets', 'mem-0.img')).size, CHUNKS_PER_TRANSFER * CHUNK_BYTES);
    assert.ok(peak <= RSS_LIMIT_BYTES, `serve's peak RSS ${(peak / MIB).toFixed(0)} MiB is more than ${RSS_LIMIT_BYTES / MIB} MiB`);
  } finally {
    for (const c of clients) c.close();
    await stopServe(s);
    rmSync(join(dir, 'targets'), { recursive: true, force: true });
  }
});
